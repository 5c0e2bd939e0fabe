-- Plan names are unique ignoring case and surrounding spaces ("Basic", "basic" and
-- "Basic " are one plan); the name is kept as created, for display. Plans that already
-- share a name that way keep it for the oldest; each later one gets its id appended
-- (" #7": a character no valid name has, so the new name is free).
UPDATE plans SET name = trim(name) || ' #' || id
WHERE EXISTS (
    SELECT 1 FROM plans older
    WHERE lower(trim(older.name)) = lower(trim(plans.name)) AND older.id < plans.id
);
CREATE UNIQUE INDEX plans_name_ignoring_case ON plans (lower(trim(name)));

-- Emails are stored and compared in Unicode NFC ("é" composed, not "e" and a combining
-- accent); they were already trimmed and lower case. Each stored one not in NFC is
-- rewritten, unless another user already has that spelling: both stay then, and the
-- one not in NFC is no longer found by its email (its keys still work).
-- normalize() is PostgreSQL's (NFC by default); the gateway gives SQLite the same.
UPDATE users SET email = normalize(email)
WHERE email <> normalize(email)
AND NOT EXISTS (
    SELECT 1 FROM users other
    WHERE other.id <> users.id AND normalize(other.email) = normalize(users.email)
);
