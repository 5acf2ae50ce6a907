-- Customers per tenant (every row of `customer`, whatever its status), kept current in the same
-- transaction as every insert and delete of a customer (customers::store::count_customers: API
-- create and delete, import, sync and callbacks). The unfiltered customer list shows this as its
-- exact total instead of counting the tenant's rows on every view (85-149 ms at 1,000,000).
CREATE TABLE customer_count (
    tenant_id BIGINT NOT NULL PRIMARY KEY,
    customer_count BIGINT NOT NULL DEFAULT 0
);

INSERT INTO customer_count (tenant_id, customer_count)
SELECT tenant_id, COUNT(*) FROM customer GROUP BY tenant_id;
