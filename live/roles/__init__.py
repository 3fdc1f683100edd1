"""The roles of a live run, each a process: source, gateway, worker, serverless pool, sink."""
