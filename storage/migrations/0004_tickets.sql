-- 0004_tickets: the ledger's actor and the purchase's Idempotency-Key.
-- The functions (the ledger, purchases, promos, profiles, the admin
-- catalogue, the audit) live in storage/sql/02_tickets.sql, 04_social.sql
-- and 05_admin.sql.

-- Who made an adjustment (the admin's uid); NULL for every other kind.
ALTER TABLE ledger ADD COLUMN actor_uid text;

-- The Idempotency-Key of the request that created the purchase (NULL without
-- one), so that whichever transaction settles it stores the answer for it.
ALTER TABLE purchases ADD COLUMN idempotency_key text;
CREATE INDEX purchases_pending_idx ON purchases (created_at) WHERE status = 'pending';
