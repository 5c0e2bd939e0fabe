-- An optional name for each API key, so that people can tell their keys apart (what the
-- key is for: "CI", "laptop"); the prefix alone does not say. Set by the owner on the
-- keys page or the self-service API, or by the operator; never unique.
ALTER TABLE api_keys ADD COLUMN name TEXT;
