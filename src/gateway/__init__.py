"""The composition root: the HTTP application built from each part's routes, and its process."""
