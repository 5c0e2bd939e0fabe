-- A plan change decided for the next period start: applied by the roll-over.
ALTER TABLE accounts ADD COLUMN pending_plan_id BIGINT REFERENCES plans (id);
