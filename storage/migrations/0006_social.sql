-- 0006_social: the indexes of player search and of the admin's list of
-- deleted users. The functions (friends, search, profiles, scores, soft
-- delete / restore) live in storage/sql/04_social.sql and 05_admin.sql.

-- The search: a prefix of lower(pseudo), compared byte by byte (see
-- rn_users_search), over live users only.
CREATE INDEX users_pseudo_prefix_idx ON users (lower(pseudo) text_pattern_ops)
    WHERE deleted_at IS NULL;
-- The admin's list of deleted users.
CREATE INDEX users_deleted_idx ON users (id) WHERE deleted_at IS NOT NULL;
