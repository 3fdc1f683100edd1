"""Deployment: process supervision, the local run on one machine, and the testbed."""
