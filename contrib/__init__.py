"""Tools beside the client: local NFS-Ganesha servers, the benchmark, test servers."""
