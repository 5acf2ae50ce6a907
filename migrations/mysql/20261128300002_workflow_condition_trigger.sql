-- Workflows started by a condition on a customer's time line ("added 3 days ago"): each check
-- starts the customers whose moment fell after the last check; the check's high-water mark
-- (set to the publish time when a workflow goes live) keeps a moment from being missed when
-- checks are late or the service was down, and from being swept in from before publishing.
ALTER TABLE workflow ADD COLUMN condition_checked_until BIGINT;
-- Customers by the time they were added, per tenant: the condition's window scan.
CREATE INDEX idx_customer_add_time ON customer (tenant_id, add_time);
