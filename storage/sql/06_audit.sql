-- 06_audit: the audit log (table audit_log, migration 0013): one row per
-- admin action and sensitive event -- who (actor: an admin's uid, or
-- "webhook:<provider>", "system"), when, what (action, e.g. "game.update"),
-- on what (target type and id), the target before and after.
--
-- Writers call rn_audit_log() in their own transaction, so a row exists
-- exactly when the change committed. It returns the row as JSON: a writer
-- adds it to its answer's "audit" array (hub/db.h), and the hub streams each
-- entry to the admin sockets as admin_event kind "audit" after the commit.
-- Rows hold ids and catalogue values, never a player's personal data beyond
-- their uid.
--
-- Layout: storage/sql/README.md (applied after 01 .. 05; LANGUAGE sql bodies
-- here may call anything of the earlier files).

CREATE OR REPLACE FUNCTION rn_audit_json(l audit_log)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', l.id, 'at', l.at, 'at_ms', rn_ms(l.at), 'actor', l.actor, 'action', l.action,
        'target_type', l.target_type, 'target_id', l.target_id,
        'before', l.before, 'after', l.after)
$$;

-- Writes one audit row; returns it (rn_audit_json) for the answer's "audit".
-- A NULL actor is written as "system".
CREATE OR REPLACE FUNCTION rn_audit_log(p_actor text, p_action text, p_target_type text,
                                        p_target_id text, p_before jsonb, p_after jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    l audit_log;
BEGIN
    INSERT INTO audit_log (actor, action, target_type, target_id, before, after)
    VALUES (coalesce(p_actor, 'system'), p_action, p_target_type, p_target_id, p_before,
            p_after)
    RETURNING * INTO l;
    RETURN rn_audit_json(l);
END
$$;

-- An answer with one audit entry added to its "audit" array.
CREATE OR REPLACE FUNCTION rn_with_audit(p_answer jsonb, p_entry jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT p_answer || jsonb_build_object(
        'audit', coalesce(p_answer -> 'audit', '[]'::jsonb) || jsonb_build_array(p_entry))
$$;

-- GET /admin/audit?actor&action&target_type&target_id&from&to&limit&cursor:
-- newest first, paged by id (cursor: the last id seen). Each filter is
-- optional and exact; from/to (ISO 8601) bound "at", from inclusive, to
-- exclusive. 400 invalid_time for a time that does not parse.
CREATE OR REPLACE FUNCTION rn_admin_audit_list(p_actor text, p_action text, p_target_type text,
                                               p_target_id text, p_from text, p_to text,
                                               p_limit integer, p_cursor bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_from timestamptz;
    v_to timestamptz;
BEGIN
    BEGIN
        v_from := p_from::timestamptz;
        v_to := p_to::timestamptz;
    EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow
                   OR invalid_text_representation OR invalid_parameter_value THEN
        RETURN rn_error(400, 'invalid_time', 'from / to: ISO 8601 times, e.g. 2026-12-02T17:00:00Z');
    END;
    RETURN rn_answer(200, rn_page(
        (SELECT coalesce(jsonb_agg(rn_audit_json(l) ORDER BY l.id DESC), '[]'::jsonb)
           FROM (SELECT * FROM audit_log
                  WHERE (p_cursor IS NULL OR id < p_cursor)
                    AND (p_actor IS NULL OR actor = p_actor)
                    AND (p_action IS NULL OR action = p_action)
                    AND (p_target_type IS NULL OR target_type = p_target_type)
                    AND (p_target_id IS NULL OR target_id = p_target_id)
                    AND (v_from IS NULL OR at >= v_from)
                    AND (v_to IS NULL OR at < v_to)
                  ORDER BY id DESC LIMIT p_limit + 1) l),
        p_limit));
END
$$;
