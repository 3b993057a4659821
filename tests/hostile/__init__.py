"""A hostile NFSv4.1 server and the checks that the client survives it (issue 7)."""
