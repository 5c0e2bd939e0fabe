-- Failed authentications per bucket (a client address, or an account) in its current
-- window. Kept in the database so that the throttle holds across worker processes and
-- machines; rows whose window has ended are deleted by the service's housekeeping.
CREATE TABLE auth_failures (
    bucket TEXT PRIMARY KEY,
    window_end BIGINT NOT NULL,
    failures BIGINT NOT NULL
);
CREATE INDEX auth_failures_window_end ON auth_failures (window_end);
