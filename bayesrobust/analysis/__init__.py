"""Paper analyses built on attacks: each is a plain function returning metrics and arrays."""
