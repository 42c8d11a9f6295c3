"""One thin servicer per proto service; ``errors`` holds the one ``@rpc`` and the one table from
domain errors to gRPC status codes that every service uses."""
