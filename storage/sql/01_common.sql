-- 01_common: helpers every domain uses: answers and errors, the caller's
-- user id, private events, idempotency keys, pages, JSON body fields.
--
-- Layout (storage/sql/README.md): every SQL function of the hub lives in
-- exactly one domain file, as CREATE OR REPLACE; the runner (storage/migrate.c)
-- applies a file again whenever its content changes, after the migrations, in
-- their transaction, in file-name order (01 .. 05). Tables, indexes and data
-- changes stay in storage/migrations. A LANGUAGE sql body is checked when it
-- is created, so it may only call functions of this file defined above it or
-- of a file applied earlier; PL/pgSQL binds late and may call anything.
-- A function removed from here must be DROPped by a new migration.
--
-- A function called by a REST handler returns one jsonb value (hub/db.h):
--   {"status": 201, "body": {...}, "events": [...]}
-- Business errors are answers, returned before anything is written:
--   {"status": 409, "body": {"error": {"code": "...", "message": "...", ...}}}
-- A caller without a profile always gets rn_not_registered().
-- events are the user_events rows the transaction wrote, each in the shape
-- hub/events.h delivers after the commit: {id, kind, payload, at_ms, uid} (a
-- user's) or {id, kind, payload, at_ms, arcade_id} (a cabinet's).

-- An answer, and a business error as an answer. Labelled STABLE (what
-- jsonb_build_object is), they inline into their callers' plans; labelled
-- IMMUTABLE they could not be, and were planned at every call.
CREATE OR REPLACE FUNCTION rn_answer(p_status integer, p_body jsonb, p_events jsonb DEFAULT '[]')
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('status', p_status, 'body', p_body, 'events', p_events)
$$;

CREATE OR REPLACE FUNCTION rn_error(p_status integer, p_code text, p_message text,
                                    p_extra jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('status', p_status, 'events', '[]'::jsonb, 'body',
        jsonb_build_object('error',
            jsonb_build_object('code', p_code, 'message', p_message) || p_extra))
$$;

-- The answer to a caller without a profile (unknown or deleted uid): every
-- function answers it through here, never with its own copy.
CREATE OR REPLACE FUNCTION rn_not_registered()
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT rn_error(404, 'not_registered', 'no profile yet: POST /api/v1/auth/register')
$$;

-- The id of a live (not deleted) user, or NULL. PL/pgSQL: a plan kept for
-- the session instead of one per call (the ack and resume queries of
-- hub/events.c call it too).
CREATE OR REPLACE FUNCTION rn_user_id(p_uid text)
RETURNS bigint LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_id bigint;
BEGIN
    SELECT id INTO v_id FROM users WHERE firebase_uid = p_uid AND deleted_at IS NULL;
    RETURN v_id;
END
$$;

-- Reads an optional member of a JSON body as text, checking its JSON type:
-- NULL when absent or null; raises 22023 (answered 400 by the callers) when
-- it has another type.
CREATE OR REPLACE FUNCTION rn_body_field(p_body jsonb, p_name text, p_type text)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_body -> p_name IS NULL OR jsonb_typeof(p_body -> p_name) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(p_body -> p_name) <> p_type THEN
        RAISE EXCEPTION '% must be a %', p_name, p_type USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN p_body ->> p_name;
END
$$;

-- A page of a list: p_items (already limited to p_limit + 1 rows, newest
-- first) -> {"items": [first p_limit], "next_cursor": id of the last one as
-- text when there is more, else null}.
CREATE OR REPLACE FUNCTION rn_page(p_items jsonb, p_limit integer)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'items', coalesce((SELECT jsonb_agg(e ORDER BY n) FROM jsonb_array_elements(p_items)
                           WITH ORDINALITY AS t (e, n) WHERE n <= p_limit), '[]'::jsonb),
        'next_cursor', CASE WHEN jsonb_array_length(p_items) > p_limit
                            THEN to_jsonb((p_items -> (p_limit - 1) ->> 'id')) END)
$$;

-- Milliseconds since the epoch, NULL for NULL.
CREATE OR REPLACE FUNCTION rn_ms(p_ts timestamptz)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT (extract(epoch FROM p_ts) * 1000)::bigint
$$;

-- An event as a transaction's answer carries it and hub/events.h delivers it:
-- {id, kind, payload, at_ms} and its recipient, p_to_key 'uid' (a user's
-- firebase uid) or 'arcade_id' (a cabinet's). No query of its own: it
-- inlines, and the caller's look-up of the recipient stays in its plan.
CREATE OR REPLACE FUNCTION rn_event_json(p_id bigint, p_kind text, p_payload jsonb,
                                         p_at timestamptz, p_to_key text, p_to jsonb)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', p_id, 'kind', p_kind, 'payload', p_payload,
                              'at_ms', rn_ms(p_at), p_to_key, p_to)
$$;

-- Writes a private event for a user; returns it for the answer's "events".
-- created_at is the clock, not the transaction start, so commit -> ack
-- latency is measured from when the event was made.
CREATE OR REPLACE FUNCTION rn_user_event(p_user_id bigint, p_kind text, p_payload jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_at timestamptz;
BEGIN
    INSERT INTO user_events (user_id, kind, payload, created_at)
    VALUES (p_user_id, p_kind, p_payload, clock_timestamp())
    RETURNING id, created_at INTO v_id, v_at;
    RETURN rn_event_json(v_id, p_kind, p_payload, v_at, 'uid',
                         to_jsonb((SELECT firebase_uid FROM users WHERE id = p_user_id)));
END
$$;

-- Writes a command for a cabinet (its inbox is acked like a phone's).
CREATE OR REPLACE FUNCTION rn_cabinet_event(p_arcade_id bigint, p_kind text, p_payload jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_at timestamptz;
BEGIN
    INSERT INTO user_events (arcade_id, kind, payload, created_at)
    VALUES (p_arcade_id, p_kind, p_payload, clock_timestamp())
    RETURNING id, created_at INTO v_id, v_at;
    RETURN rn_event_json(v_id, p_kind, p_payload, v_at, 'arcade_id', to_jsonb(p_arcade_id));
END
$$;

-- Writes private events, one per (user, kind, payload) of the three arrays
-- (same length; a NULL user is skipped), in array order: their ids follow
-- that order. Returns them as an array in id order, each as rn_user_event
-- returns it. The multi-row form of rn_user_event.
CREATE OR REPLACE FUNCTION rn_users_events_x(p_users bigint[], p_kinds text[], p_payloads jsonb[])
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_events jsonb;
BEGIN
    WITH ins AS (
        INSERT INTO user_events (user_id, kind, payload, created_at)
        SELECT t.u, t.k, t.p, clock_timestamp()
        FROM unnest(p_users, p_kinds, p_payloads) WITH ORDINALITY AS t (u, k, p, n)
        WHERE t.u IS NOT NULL
        ORDER BY t.n
        RETURNING id, user_id, kind, payload, created_at)
    SELECT coalesce(jsonb_agg(rn_event_json(ins.id, ins.kind, ins.payload, ins.created_at, 'uid',
                              to_jsonb((SELECT u.firebase_uid FROM users u WHERE u.id = ins.user_id)))
                              ORDER BY ins.id), '[]'::jsonb)
    INTO v_events
    FROM ins;
    RETURN v_events;
END
$$;

-- Idempotency. Every request with a key first takes a transaction-scoped
-- advisory lock on (user, key): two requests with one key are serialised
-- there (the second waits until the first commits), so what the second finds
-- in idempotency_keys afterwards is final. Two styles:
--   * one transaction (a reservation): rn_idem_check, then the work, then
--     rn_idem_store writes the key and its answer: one row write;
--   * a request over two transactions (a payment: charge between them):
--     rn_idem_begin claims the key (a row with no answer yet, 409 to a
--     replay meanwhile), rn_idem_finish stores the answer into that row.

-- The stored answer for (user, key) as rn_idem_check / rn_idem_begin return
-- it: the first answer for the same request, 422 for the same key with
-- another request, 409 while the first request is still running (a payment).
CREATE OR REPLACE FUNCTION rn_idem_replay_x(k idempotency_keys, p_hash text)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN
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

-- Serialises the requests of one (user, key) until the transaction ends.
-- Both ints of the lock come from the key's hash and the user (a collision
-- only makes two unrelated requests wait for each other). LANGUAGE sql: it
-- inlines into the caller's PERFORM, one statement instead of two.
CREATE OR REPLACE FUNCTION rn_idem_lock(p_user_id bigint, p_key text)
RETURNS void LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(hashtextextended(p_key, p_user_id))
$$;

-- One-transaction idempotency, first half: NULL for a fresh key (or none
-- given): go on, and end with rn_idem_store. Otherwise the answer to return
-- (rn_idem_replay_x). Writes nothing.
CREATE OR REPLACE FUNCTION rn_idem_check(p_user_id bigint, p_key text, p_hash text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    k idempotency_keys;
BEGIN
    IF p_key IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM rn_idem_lock(p_user_id, p_key);
    SELECT * INTO k FROM idempotency_keys WHERE user_id = p_user_id AND key = p_key;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN rn_idem_replay_x(k, p_hash);
END
$$;

-- One-transaction idempotency, second half: stores the first answer (errors
-- included) with its key and returns it unchanged (RETURN rn_idem_store(...)).
-- Under rn_idem_check's lock no other row for the key can appear; if one
-- did (a key claimed without it), the first answer stays.
CREATE OR REPLACE FUNCTION rn_idem_store(p_user_id bigint, p_key text, p_hash text, p_result jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF p_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (user_id, key, request_hash, status_code, response)
        VALUES (p_user_id, p_key, p_hash, (p_result->>'status')::integer,
                (p_result->'body')::text)
        ON CONFLICT (user_id, key) DO NOTHING;
    END IF;
    RETURN p_result;
END
$$;

-- Two-transaction idempotency, first half: claims (user, key) for this
-- request. NULL: a fresh key (or none given), go on. Otherwise the answer to
-- return (rn_idem_replay_x). rn_idem_check's lock holds until the claim is
-- committed, so no other row for the key can appear in between.
CREATE OR REPLACE FUNCTION rn_idem_begin(p_user_id bigint, p_key text, p_hash text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    answer jsonb := rn_idem_check(p_user_id, p_key, p_hash);
BEGIN
    IF answer IS NULL AND p_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (user_id, key, request_hash)
        VALUES (p_user_id, p_key, p_hash);
    END IF;
    RETURN answer;
END
$$;

-- Two-transaction idempotency, second half: stores the first answer (errors
-- included) into the claimed row and returns it unchanged, so a function can
-- end with RETURN rn_idem_finish(...).
CREATE OR REPLACE FUNCTION rn_idem_finish(p_user_id bigint, p_key text, p_result jsonb)
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
CREATE OR REPLACE FUNCTION rn_idem_expire(p_keep interval DEFAULT interval '48 hours')
RETURNS integer LANGUAGE sql AS $$
    WITH gone AS (DELETE FROM idempotency_keys WHERE created_at < now() - p_keep RETURNING 1)
    SELECT count(*)::integer FROM gone
$$;

-- An ack of event p_id by its recipient (user p_uid or cabinet p_arcade_id),
-- received by the hub at p_at_ms (its wall clock; NULL: now). The hub may
-- record it late (it retries while PostgreSQL is away): the time the device
-- acked is what counts for the deadline, never in the future nor before the
-- event. Returns (kind, seconds from commit to ack), no row when it was not
-- the recipient's or was acked already.
CREATE OR REPLACE FUNCTION rn_ack(p_id bigint, p_uid text, p_arcade_id bigint, p_at_ms bigint)
RETURNS TABLE (kind text, seconds double precision) LANGUAGE sql AS $$
    UPDATE user_events e
       SET acked_at = greatest(e.created_at,
                               least(clock_timestamp(),
                                     coalesce(to_timestamp(p_at_ms / 1000.0), clock_timestamp())))
     WHERE e.id = p_id AND e.acked_at IS NULL
       AND (e.user_id = rn_user_id(p_uid) OR e.arcade_id = p_arcade_id)
    RETURNING e.kind, extract(epoch FROM e.acked_at - e.created_at)::double precision
$$;

-- The unacked private events of a user (p_uid) or a cabinet (p_arcade_id)
-- after event id p_since, oldest first, at most p_limit (resume and every
-- catch-up read their inbox through this): (id, kind, payload, at_ms).
CREATE OR REPLACE FUNCTION rn_events_unacked(p_uid text, p_arcade_id bigint, p_since bigint,
                                             p_limit integer)
RETURNS TABLE (id bigint, kind text, payload text, at_ms bigint) LANGUAGE sql STABLE AS $$
    SELECT e.id, e.kind, e.payload::text, (extract(epoch FROM e.created_at) * 1000)::bigint
      FROM user_events e
     WHERE e.acked_at IS NULL AND e.id > p_since
       AND (e.user_id = rn_user_id(p_uid) OR e.arcade_id = p_arcade_id)
     ORDER BY e.id
     LIMIT p_limit
$$;

-- Retention of the private inbox (hub/engine/events_expire.c calls it every
-- --events-expire-sweep-ms): deletes events acked more than p_keep ago (so
-- created more than p_keep ago too: acked_at >= created_at), at most p_limit
-- rows, oldest first. An unacked event stays whatever its age: a phone back
-- after a month still gets it on resume. The readers of user_events keep
-- working:
--   rn_events_unacked, rn_events_sweep: unacked rows only;
--   rn_call_due: a called reservation's acked your_turn. Without it the due
--     time is the call's maximum (call + 2 x its deadline), never earlier than
--     with it; the hub keeps events at least that long (config_validate), so
--     a row deleted here could no longer change an answer;
--   rn_audit: 'orphan' looks for events naming a missing user; a delete
--     makes none.
-- The path: user_events_created_idx (created_at) read from p_after (the
-- previous batch's `upto`; NULL: the oldest) up to the cut, acked_at checked
-- on the rows met, their ctids deleted. No new index (one more write per
-- event); the price is that the old unacked rows in front of the acked ones
-- are read again by each sweep, once, not by each batch. One sweeper at a
-- time over every hub: a call that finds another's transaction lock deletes
-- nothing and returns (0, NULL). Returns (deleted, upto: created_at of the
-- newest row deleted, NULL when none). A keep under an hour or a limit
-- outside 1..100000 is refused (22023).
CREATE OR REPLACE FUNCTION rn_events_expire(p_keep interval, p_limit integer,
                                            p_after timestamptz DEFAULT NULL)
RETURNS TABLE (deleted integer, upto timestamptz) LANGUAGE plpgsql AS $$
DECLARE
    v_cut timestamptz := now() - p_keep;
BEGIN
    IF p_keep IS NULL OR p_keep < interval '1 hour' THEN
        RAISE EXCEPTION 'events are kept at least 1 hour (p_keep %)', p_keep
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION 'p_limit must be 1..100000 (got %)', p_limit
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- two int4 keys: a key space apart from rn_idem_lock's and the migrations' int8 keys
    IF NOT pg_try_advisory_xact_lock(1701, 1) THEN
        RETURN QUERY SELECT 0, NULL::timestamptz;
        RETURN;
    END IF;
    RETURN QUERY
    WITH gone AS (
        DELETE FROM user_events e
         WHERE e.ctid = ANY (ARRAY(
                   SELECT x.ctid FROM user_events x
                    WHERE x.created_at >= coalesce(p_after, '-infinity')
                      AND x.created_at < v_cut AND x.acked_at < v_cut
                    ORDER BY x.created_at
                    LIMIT p_limit))
        RETURNING e.created_at)
    SELECT count(*)::integer, max(gone.created_at) FROM gone;
END
$$;

-- The unacked-event sweep (hub/events_sweep.c): a hub that died between a
-- commit and its publish leaves events nobody pushed. Each sweep covers the
-- events created in (p_since, now() - p_age_ms]: windows that follow each
-- other, so every event is looked at once, when it is between one and two
-- periods old (the first window, p_since NULL, is one period long). The
-- first row carries the window's end (channel NULL: the next p_since); then
-- the unacked events of the local channels (p_uids: user uids, p_arcades:
-- cabinet arcade ids, JSON arrays) in that window, in id order, each as the
-- wire JSON the hub publishes.
CREATE OR REPLACE FUNCTION rn_events_sweep(p_uids jsonb, p_arcades jsonb, p_age_ms bigint,
                                           p_since timestamptz)
RETURNS TABLE (channel text, message text, upto text, id bigint) LANGUAGE sql STABLE AS $$
    WITH w AS (SELECT now() - make_interval(secs => p_age_ms / 1000.0) AS hi),
    win AS (SELECT hi, coalesce(p_since, hi - make_interval(secs => p_age_ms / 1000.0)) AS lo
              FROM w),
    ev AS (
        SELECT 'rn:user:' || u.firebase_uid AS channel, e.*
          FROM users u JOIN user_events e ON e.user_id = u.id, win
         WHERE u.firebase_uid IN (SELECT jsonb_array_elements_text(p_uids))
           AND e.acked_at IS NULL AND e.created_at > win.lo AND e.created_at <= win.hi
        UNION ALL
        SELECT 'rn:cabinet:' || e.arcade_id, e.*
          FROM user_events e, win
         WHERE e.arcade_id IN (SELECT jsonb_array_elements_text(p_arcades)::bigint)
           AND e.acked_at IS NULL AND e.created_at > win.lo AND e.created_at <= win.hi)
    SELECT NULL::text, NULL::text, hi::text, 0::bigint FROM win
    UNION ALL
    SELECT ev.channel,
           (ev.payload || jsonb_build_object('type', ev.kind, 'event_id', ev.id, 'at_ms',
                          (extract(epoch FROM ev.created_at) * 1000)::bigint))::text,
           NULL, ev.id
      FROM ev
    ORDER BY 4
$$;
