"""Integration tests: the session layer and NFSClient against a real NFS-Ganesha."""
