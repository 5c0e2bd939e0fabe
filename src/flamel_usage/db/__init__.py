"""The one gateway to the store: SQLite or PostgreSQL behind one connection API, and migrations."""
