"""HTTP/1.1 on trio + h11: the hub server and the node client."""
