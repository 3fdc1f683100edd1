"""The wire: the binary message format, the broker connection and the topic names."""
