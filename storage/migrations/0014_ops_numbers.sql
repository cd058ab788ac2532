-- 0014_ops_numbers: indexes for the business numbers (storage/sql/07_reports.sql)
-- and the new signature of rn_leaderboard (from / to).
--
-- /admin/stats and /admin/reports read ranges of time: each range is an index
-- range scan, so a report over a day of a table of millions of rows reads
-- that day only.
-- delta and the references included: the sums of a period are index-only scans
CREATE INDEX ledger_kind_created_idx ON ledger (kind, created_at)
    INCLUDE (delta, purchase_id, reservation_id);
CREATE INDEX reservations_created_idx ON reservations (created_at);
CREATE INDEX reservations_ended_idx ON reservations (ended_at) WHERE status = 'completed';

-- GET /scores gained from / to (04_social.sql).
DROP FUNCTION IF EXISTS rn_leaderboard(text, bigint, bigint, boolean, text, integer, bigint);
