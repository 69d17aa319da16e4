"""The web console: server-rendered pages for the people who run billing, on the API's code."""
