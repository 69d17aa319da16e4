"""The Lago resources' payload rules and SQL, one module per resource, shared by the API
(`resources`) and the console so that neither imports the other and no rule has a twin."""
