"""How nodes reach each other: the server factory, channels and calls, caller identity, TLS and
certificates, and typed calls to peers (``peers``). No protocol knowledge lives here."""
