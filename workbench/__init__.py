"""The relevance workbench: a web page over the public gRPC API (and, where given, the admin API) where a person
searches as a shopper, sees why each product ranks where it does, compares two rankings, judges results and sends
feedback. It holds no ranking logic of its own: every ranking on its pages is an answer of the service."""
