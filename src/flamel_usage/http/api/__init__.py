"""The JSON API's handlers: parse the request, call the domain, render the outcome."""
