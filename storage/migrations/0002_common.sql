-- Helpers shared by every state-changing SQL function.
--
-- A function called by a REST handler returns one jsonb value (hub/db.h):
--   {"status": 201, "body": {...}, "events": [...]}
-- Business errors are answers, returned before anything is written:
--   {"status": 409, "body": {"error": {"code": "...", "message": "...", ...}}}
-- events are the user_events rows the transaction wrote, each in the shape
-- hub/events.h delivers after the commit.

CREATE FUNCTION rn_answer(p_status integer, p_body jsonb, p_events jsonb DEFAULT '[]')
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('status', p_status, 'body', p_body, 'events', p_events)
$$;

CREATE FUNCTION rn_error(p_status integer, p_code text, p_message text, p_extra jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('status', p_status, 'events', '[]'::jsonb, 'body',
        jsonb_build_object('error',
            jsonb_build_object('code', p_code, 'message', p_message) || p_extra))
$$;

-- The id of a live (not deleted) user, or NULL.
CREATE FUNCTION rn_user_id(p_uid text)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT id FROM users WHERE firebase_uid = p_uid AND deleted_at IS NULL
$$;

-- An event row as hub/events.h expects it.
CREATE FUNCTION rn_event_json(e user_events)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', e.id, 'kind', e.kind, 'payload', e.payload,
        'at_ms', (extract(epoch FROM e.created_at) * 1000)::bigint)
        || CASE WHEN e.user_id IS NOT NULL
                THEN jsonb_build_object('uid', (SELECT firebase_uid FROM users WHERE id = e.user_id))
                ELSE jsonb_build_object('arcade_id', e.arcade_id) END
$$;

-- Writes a private event for a user; returns it for the answer's "events".
-- created_at is the clock, not the transaction start, so commit -> ack
-- latency is measured from when the event was made.
CREATE FUNCTION rn_user_event(p_user_id bigint, p_kind text, p_payload jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    e user_events;
BEGIN
    INSERT INTO user_events (user_id, kind, payload, created_at)
    VALUES (p_user_id, p_kind, p_payload, clock_timestamp())
    RETURNING * INTO e;
    RETURN rn_event_json(e);
END
$$;

-- Writes a command for a cabinet (its inbox is acked like a phone's).
CREATE FUNCTION rn_cabinet_event(p_arcade_id bigint, p_kind text, p_payload jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    e user_events;
BEGIN
    INSERT INTO user_events (arcade_id, kind, payload, created_at)
    VALUES (p_arcade_id, p_kind, p_payload, clock_timestamp())
    RETURNING * INTO e;
    RETURN rn_event_json(e);
END
$$;

-- Idempotency, first half: claims (user, key) for this request.
-- NULL: a fresh key (or none given), go on. Otherwise the answer to return:
-- the stored first answer for the same request, 422 for the same key with
-- another request, 409 while the first request is still running (a payment).
-- A concurrent first claim of the same key waits on the unique index until
-- that transaction ends, then replays its stored answer: one effect.
CREATE FUNCTION rn_idem_begin(p_user_id bigint, p_key text, p_hash text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    k idempotency_keys;
BEGIN
    IF p_key IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO idempotency_keys (user_id, key, request_hash)
    VALUES (p_user_id, p_key, p_hash)
    ON CONFLICT (user_id, key) DO NOTHING;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    SELECT * INTO k FROM idempotency_keys WHERE user_id = p_user_id AND key = p_key;
    IF k.request_hash <> p_hash THEN
        RETURN rn_error(422, 'idempotency_key_reused',
                        'this Idempotency-Key was used for a different request');
    END IF;
    IF k.status_code IS NULL THEN
        RETURN rn_error(409, 'request_in_progress',
                        'a request with this Idempotency-Key is still being processed');
    END IF;
    RETURN jsonb_build_object('status', k.status_code, 'body', k.response::jsonb,
                              'events', '[]'::jsonb, 'replayed', true);
END
$$;

-- Idempotency, second half: stores the first answer (errors included) and
-- returns it unchanged, so a function can end with RETURN rn_idem_finish(...).
CREATE FUNCTION rn_idem_finish(p_user_id bigint, p_key text, p_result jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF p_key IS NOT NULL THEN
        UPDATE idempotency_keys
           SET status_code = (p_result->>'status')::integer, response = (p_result->'body')::text
         WHERE user_id = p_user_id AND key = p_key;
    END IF;
    RETURN p_result;
END
$$;

-- Keys are kept at least 24 h; the hub calls this now and then.
CREATE FUNCTION rn_idem_expire(p_keep interval DEFAULT interval '48 hours')
RETURNS integer LANGUAGE sql AS $$
    WITH gone AS (DELETE FROM idempotency_keys WHERE created_at < now() - p_keep RETURNING 1)
    SELECT count(*)::integer FROM gone
$$;
