-- Follow-up reminders (job customers.followups.remind): reminded 0 pending, 1 sent, 2 failed
-- (remind_error says why), 3 being sent; reminded_at when it last changed. The due scan uses
-- idx_follow_up_due (reminded, next_follow_at) from the customers migration.
ALTER TABLE follow_up ADD COLUMN reminded_at BIGINT;
ALTER TABLE follow_up ADD COLUMN remind_error VARCHAR(255);
