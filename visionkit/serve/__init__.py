"""Model servers: the Label Studio ML backend."""
