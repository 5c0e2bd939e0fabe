"""The browser pages: sign-in, usage, keys."""
