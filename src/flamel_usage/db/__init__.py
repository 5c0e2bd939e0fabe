"""The store: ``gateway`` (the connection API services use), ``sqlite`` and ``postgres``
(the two stores behind it), ``migrate`` (the schema, from ``migrations/<store>/``)."""
