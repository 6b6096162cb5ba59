"""The contract shared by the server, the worker and the shell."""
