"""flists: filesystem images as metadata, their bytes in content-addressed blocks."""
