"""The OCI distribution protocol: pure request planning (protocol.py) and
the one module that speaks HTTP (client.py)."""
