-- 04_social: profiles (register, me, profile), friends, player search,
-- scores and leaderboards (hub/api_tickets.c, hub/api_social.c).
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
-- Every function answers one jsonb value (hub/db.h) and writes nothing
-- before its last check. Callers are named by their token's uid
-- (rn_user_id: a deleted user is not registered, so every route answers a
-- deleted user's token 404 not_registered until an admin restores it).
--
-- What a player may see of another (DESIGN.md "Security"):
--   * anyone: the pseudo (it is on every public queue anyway);
--   * a friend (accepted): the uid too, which POST /reservations needs as
--     player2_id;
--   * never: names, phone, balance of another player.
--
-- Friendship rules (one row per unordered pair: friendships_pair_key of 0001):
--   * request A -> B: 201 pending, `friend_request` to B. 409 already_friends,
--     409 already_requested (A asked before, pending or rejected: B is not
--     asked twice), 404 user_not_found (unknown or deleted), 422
--     cannot_befriend_self.
--   * request A -> B while B had asked A (pending, or rejected by A earlier):
--     accepts B's request (200, `friend_accepted` to B). Both want it.
--   * accept {id}: the addressee only (403 not_addressee), from pending or
--     from a request it rejected earlier; `friend_accepted` to the requester.
--   * reject {id}: the addressee only; pending -> rejected, nothing pushed.
--     The row stays: the requester cannot ask again (409 already_requested)
--     until the addressee deletes it or befriends them. A rejected request
--     leaves both lists; to its requester it no longer exists (404).
--   * DELETE {id}, {id} = the friendship id (as for accept/reject: every
--     {id} under /friends names the friendship row): either side removes an
--     accepted friendship or a pending request (withdraw / dismiss), and the
--     addressee removes a request it rejected. `friend_removed` to the other
--     side (not for a rejected one). The row is deleted: either may ask again.
--     Waiting duo reservations already booked with the ex-friend stay.
--   * a deleted user's friendships are invisible (lists, accept, reject,
--     delete: 404) and come back with the user on restore.

-- ---------------------------------------------------------------------------
-- Profiles
CREATE OR REPLACE FUNCTION rn_user_json(u users)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'uid', u.firebase_uid, 'pseudo', u.pseudo, 'first_name', u.first_name,
        'last_name', u.last_name, 'phone', u.phone, 'role', u.role,
        'tickets_balance', u.tickets_balance, 'created_at', u.created_at)
$$;

-- POST /auth/register: the caller's profile from its token's uid. Pseudos are
-- unique whatever their case (users_pseudo_lower_key), phones unique.
CREATE OR REPLACE FUNCTION rn_register(p_uid text, p_admin boolean, p_pseudo text, p_first_name text,
                            p_last_name text, p_phone text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    u users;
    v_phone text := nullif(regexp_replace(coalesce(p_phone, ''), '[\s.()-]', '', 'g'), '');
    v_constraint text;
BEGIN
    IF EXISTS (SELECT 1 FROM users WHERE firebase_uid = p_uid) THEN
        RETURN rn_error(409, 'already_registered', 'this account already has a profile');
    END IF;
    IF p_pseudo IS NULL OR p_pseudo !~ '^[A-Za-z0-9_.-]{3,32}$' THEN
        RETURN rn_error(422, 'invalid_pseudo',
                        'pseudo: 3 to 32 letters, digits, ".", "_" or "-"');
    END IF;
    IF char_length(btrim(coalesce(p_first_name, ''))) NOT BETWEEN 1 AND 64
       OR char_length(btrim(coalesce(p_last_name, ''))) NOT BETWEEN 1 AND 64 THEN
        RETURN rn_error(422, 'invalid_name', 'first_name and last_name: 1 to 64 characters');
    END IF;
    IF v_phone IS NOT NULL AND v_phone !~ '^\+?[0-9]{6,15}$' THEN
        RETURN rn_error(422, 'invalid_phone', 'phone: 6 to 15 digits, optionally after "+"');
    END IF;
    IF EXISTS (SELECT 1 FROM users WHERE lower(pseudo) = lower(p_pseudo)) THEN
        RETURN rn_error(409, 'pseudo_taken', 'this pseudo is taken',
                        jsonb_build_object('field', 'pseudo'));
    END IF;
    IF v_phone IS NOT NULL AND EXISTS (SELECT 1 FROM users WHERE phone = v_phone) THEN
        RETURN rn_error(409, 'phone_taken', 'this phone number is used by another account',
                        jsonb_build_object('field', 'phone'));
    END IF;
    BEGIN
        INSERT INTO users (firebase_uid, pseudo, first_name, last_name, phone, role)
        VALUES (p_uid, p_pseudo, btrim(p_first_name), btrim(p_last_name), v_phone,
                CASE WHEN p_admin THEN 'admin' ELSE 'player' END)
        RETURNING * INTO u;
    EXCEPTION WHEN unique_violation THEN
        -- a concurrent registration won the race: same answers as above
        GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
        RETURN CASE v_constraint
            WHEN 'users_pseudo_lower_key' THEN
                rn_error(409, 'pseudo_taken', 'this pseudo is taken',
                         jsonb_build_object('field', 'pseudo'))
            WHEN 'users_phone_key' THEN
                rn_error(409, 'phone_taken', 'this phone number is used by another account',
                         jsonb_build_object('field', 'phone'))
            ELSE rn_error(409, 'already_registered', 'this account already has a profile') END;
    END;
    RETURN rn_answer(201, jsonb_build_object('user', rn_user_json(u)));
END
$$;

-- GET /auth/me
CREATE OR REPLACE FUNCTION rn_me(p_uid text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT rn_answer(200, jsonb_build_object('user', rn_user_json(u)))
           FROM users u WHERE u.firebase_uid = p_uid AND u.deleted_at IS NULL),
        rn_not_registered())
$$;

-- The other side of a friendship, seen from p_me.
CREATE OR REPLACE FUNCTION rn_friend_other(f friendships, p_me bigint)
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN f.requester_id = p_me THEN f.addressee_id ELSE f.requester_id END
$$;

-- A friendship as p_me sees it; o is the other side. The uid only between
-- friends.
CREATE OR REPLACE FUNCTION rn_friendship_json(f friendships, p_me bigint, o users)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
               'id', f.id, 'status', f.status,
               'direction', CASE WHEN f.requester_id = p_me THEN 'outgoing' ELSE 'incoming' END,
               'pseudo', o.pseudo, 'created_at', f.created_at, 'updated_at', f.updated_at)
        || CASE WHEN f.status = 'accepted' THEN jsonb_build_object('uid', o.firebase_uid)
                ELSE '{}'::jsonb END
$$;

-- Friendship p_id of p_me, locked, when its other side is a live user and
-- it is not a request p_me made that was rejected (see the rules above).
-- All fields NULL when there is none.
CREATE OR REPLACE FUNCTION rn_friendship_lock(p_me bigint, p_id bigint)
RETURNS friendships LANGUAGE sql AS $$
    SELECT x.* FROM friendships x
    JOIN users o ON o.id = rn_friend_other(x, p_me) AND o.deleted_at IS NULL
    WHERE x.id = p_id AND p_me IN (x.requester_id, x.addressee_id)
      AND NOT (x.status = 'rejected' AND x.requester_id = p_me)
    FOR UPDATE OF x
$$;

-- The live users p_me is friends with (accepted).
CREATE OR REPLACE FUNCTION rn_friend_ids(p_me bigint)
RETURNS SETOF bigint LANGUAGE sql STABLE AS $$
    SELECT o.id FROM friendships x
    JOIN users o ON o.id = rn_friend_other(x, p_me) AND o.deleted_at IS NULL
    WHERE x.status = 'accepted' AND p_me IN (x.requester_id, x.addressee_id)
$$;

-- The addressee (p_me) accepts locked friendship f: 200 {friendship}, and
-- `friend_accepted` {friendship_id, pseudo, uid} (p_me's) to the requester.
CREATE OR REPLACE FUNCTION rn_friend_accept_do(f friendships, p_me bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    me users;
    o users;
BEGIN
    UPDATE friendships SET status = 'accepted' WHERE id = f.id RETURNING * INTO f;
    SELECT * INTO me FROM users WHERE id = p_me;
    SELECT * INTO o FROM users WHERE id = f.requester_id;
    RETURN rn_answer(200, jsonb_build_object('friendship', rn_friendship_json(f, p_me, o)),
                     jsonb_build_array(rn_user_event(o.id, 'friend_accepted', jsonb_build_object(
                         'friendship_id', f.id, 'pseudo', me.pseudo, 'uid', me.firebase_uid))));
END
$$;

-- POST /friends/request {uid} or {pseudo} (case-insensitive). Rules above.
-- 201 {friendship} (a new request) or 200 {friendship} (it accepted theirs).
CREATE OR REPLACE FUNCTION rn_friend_request(p_uid text, p_target_uid text, p_target_pseudo text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_me bigint := rn_user_id(p_uid);
    o users;
    f friendships;
BEGIN
    IF v_me IS NULL THEN
        RETURN rn_not_registered();
    END IF;
    IF p_target_uid IS NOT NULL THEN
        SELECT * INTO o FROM users WHERE firebase_uid = p_target_uid AND deleted_at IS NULL;
    ELSE
        SELECT * INTO o FROM users WHERE lower(pseudo) = lower(p_target_pseudo)
                                     AND deleted_at IS NULL;
    END IF;
    IF o.id IS NULL THEN
        RETURN rn_error(404, 'user_not_found', 'no such player');
    END IF;
    IF o.id = v_me THEN
        RETURN rn_error(422, 'cannot_befriend_self', 'you cannot be your own friend');
    END IF;

    -- The pair's row, or a new one. Two requests of one pair racing: the
    -- second INSERT waits for the first and does nothing; it then reads it.
    LOOP
        SELECT * INTO f FROM friendships x
        WHERE least(x.requester_id, x.addressee_id) = least(v_me, o.id)
          AND greatest(x.requester_id, x.addressee_id) = greatest(v_me, o.id)
        FOR UPDATE;
        EXIT WHEN FOUND;
        INSERT INTO friendships (requester_id, addressee_id) VALUES (v_me, o.id)
        ON CONFLICT DO NOTHING
        RETURNING * INTO f;
        IF FOUND THEN
            RETURN rn_answer(201, jsonb_build_object('friendship', rn_friendship_json(f, v_me, o)),
                             jsonb_build_array(rn_user_event(o.id, 'friend_request',
                                 jsonb_build_object('friendship_id', f.id, 'pseudo',
                                                    (SELECT pseudo FROM users WHERE id = v_me)))));
        END IF;
    END LOOP;

    IF f.status = 'accepted' THEN
        RETURN rn_error(409, 'already_friends', format('you are already friends with %s', o.pseudo),
                        jsonb_build_object('friendship_id', f.id));
    END IF;
    IF f.requester_id = v_me THEN
        RETURN rn_error(409, 'already_requested',
                        format('you have already asked %s to be friends', o.pseudo));
    END IF;
    RETURN rn_friend_accept_do(f, v_me);
END
$$;

-- POST /friends/accept/{id}: the addressee accepts (a pending request, or
-- one it rejected). 404 friendship_not_found, 409 already_friends, 403
-- not_addressee (the requester cannot accept its own request).
CREATE OR REPLACE FUNCTION rn_friend_accept(p_uid text, p_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_me bigint := rn_user_id(p_uid);
    f friendships;
BEGIN
    IF v_me IS NULL THEN
        RETURN rn_not_registered();
    END IF;
    f := rn_friendship_lock(v_me, p_id);
    IF f.id IS NULL THEN
        RETURN rn_error(404, 'friendship_not_found', 'no such friend request');
    END IF;
    IF f.status = 'accepted' THEN
        RETURN rn_error(409, 'already_friends', 'this request was accepted already');
    END IF;
    IF f.addressee_id <> v_me THEN
        RETURN rn_error(403, 'not_addressee', 'only the player who was asked can answer');
    END IF;
    RETURN rn_friend_accept_do(f, v_me);
END
$$;

-- POST /friends/reject/{id}: the addressee declines; nothing is pushed.
-- Rejecting twice answers the same. 404, 409 already_friends (unfriend with
-- DELETE /friends/{id}), 403 not_addressee.
CREATE OR REPLACE FUNCTION rn_friend_reject(p_uid text, p_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_me bigint := rn_user_id(p_uid);
    f friendships;
BEGIN
    IF v_me IS NULL THEN
        RETURN rn_not_registered();
    END IF;
    f := rn_friendship_lock(v_me, p_id);
    IF f.id IS NULL THEN
        RETURN rn_error(404, 'friendship_not_found', 'no such friend request');
    END IF;
    IF f.status = 'accepted' THEN
        RETURN rn_error(409, 'already_friends',
                        'this request was accepted: DELETE /api/v1/friends/{id} to unfriend');
    END IF;
    IF f.addressee_id <> v_me THEN
        RETURN rn_error(403, 'not_addressee', 'only the player who was asked can answer');
    END IF;
    IF f.status = 'pending' THEN
        UPDATE friendships SET status = 'rejected' WHERE id = f.id RETURNING * INTO f;
    END IF;
    RETURN rn_answer(200, jsonb_build_object('friendship', rn_friendship_json(
        f, v_me, (SELECT u FROM users u WHERE u.id = f.requester_id))));
END
$$;

-- DELETE /friends/{id} (the friendship id): either side, rules above.
-- 200 {deleted: true, friendship_id, was: status}; 404 friendship_not_found.
CREATE OR REPLACE FUNCTION rn_friend_delete(p_uid text, p_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_me bigint := rn_user_id(p_uid);
    f friendships;
    v_events jsonb := '[]';
BEGIN
    IF v_me IS NULL THEN
        RETURN rn_not_registered();
    END IF;
    f := rn_friendship_lock(v_me, p_id);
    IF f.id IS NULL THEN
        RETURN rn_error(404, 'friendship_not_found', 'no such friend or request');
    END IF;
    DELETE FROM friendships WHERE id = f.id;
    IF f.status <> 'rejected' THEN
        v_events := jsonb_build_array(rn_user_event(rn_friend_other(f, v_me), 'friend_removed',
            (SELECT jsonb_build_object('friendship_id', f.id, 'was', f.status, 'pseudo', u.pseudo)
                    || CASE WHEN f.status = 'accepted'
                            THEN jsonb_build_object('uid', u.firebase_uid) ELSE '{}' END
             FROM users u WHERE u.id = v_me)));
    END IF;
    RETURN rn_answer(200, jsonb_build_object('deleted', true, 'friendship_id', f.id,
                                             'was', f.status), v_events);
END
$$;

-- GET /friends: accepted friendships with live users, newest first, a page
-- of p_limit before friendship id p_cursor. Items: rn_friendship_json.
CREATE OR REPLACE FUNCTION rn_friends_list(p_uid text, p_limit integer, p_cursor bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_me bigint := rn_user_id(p_uid);
BEGIN
    IF v_me IS NULL THEN
        RETURN rn_not_registered();
    END IF;
    RETURN rn_answer(200, rn_page(
        (SELECT coalesce(jsonb_agg(rn_friendship_json(t.f, v_me, t.o) ORDER BY (t.f).id DESC),
                         '[]'::jsonb)
           FROM (SELECT x AS f, o FROM friendships x
                 JOIN users o ON o.id = rn_friend_other(x, v_me) AND o.deleted_at IS NULL
                 WHERE x.status = 'accepted' AND v_me IN (x.requester_id, x.addressee_id)
                   AND (p_cursor IS NULL OR x.id < p_cursor)
                 ORDER BY x.id DESC LIMIT p_limit + 1) t),
        p_limit));
END
$$;

-- GET /friends/requests?direction=incoming|outgoing: pending requests to
-- p_uid (incoming) and from p_uid (outgoing), both when p_direction is NULL;
-- newest first, paged like rn_friends_list. Each item says its direction.
CREATE OR REPLACE FUNCTION rn_friend_requests(p_uid text, p_direction text, p_limit integer,
                                   p_cursor bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_me bigint := rn_user_id(p_uid);
BEGIN
    IF v_me IS NULL THEN
        RETURN rn_not_registered();
    END IF;
    RETURN rn_answer(200, rn_page(
        (SELECT coalesce(jsonb_agg(rn_friendship_json(t.f, v_me, t.o) ORDER BY (t.f).id DESC),
                         '[]'::jsonb)
           FROM (SELECT x AS f, o FROM friendships x
                 JOIN users o ON o.id = rn_friend_other(x, v_me) AND o.deleted_at IS NULL
                 WHERE x.status = 'pending'
                   AND ((x.addressee_id = v_me AND coalesce(p_direction, 'incoming') = 'incoming')
                        OR (x.requester_id = v_me
                            AND coalesce(p_direction, 'outgoing') = 'outgoing'))
                   AND (p_cursor IS NULL OR x.id < p_cursor)
                 ORDER BY x.id DESC LIMIT p_limit + 1) t),
        p_limit));
END
$$;

-- GET /users/search?q=: live players whose pseudo, first name, last name or
-- "first last" starts with p_q (any case, 2 to 32 characters; the name is
-- matched, never shown), the caller excepted, by pseudo; p_limit (1..20)
-- after p_cursor (the previous page's next_cursor: a lower-case pseudo).
-- Items {pseudo, relation: none|friend|requested|requested_you,
-- friendship_id (unless none), uid (friends only)}. Never a name or a phone.
--
-- Pseudos are ASCII ([A-Za-z0-9_.-], rn_register), so a q with anything else
-- matches no pseudo (names still). The pseudo prefix is a byte range of lower(pseudo), [q, q with its
-- last byte + 1), under the text_pattern_ops operators: users_pseudo_prefix_idx
-- serves it whatever the plan (LIKE 'q%' with q a parameter would not).
CREATE OR REPLACE FUNCTION rn_users_search(p_uid text, p_q text, p_limit integer, p_cursor text)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_me bigint := rn_user_id(p_uid);
    v_q text := lower(coalesce(p_q, ''));
    v_hi text;
    v_like text;
    v_limit integer := least(greatest(coalesce(p_limit, 20), 1), 20);
    v_items jsonb;
BEGIN
    IF v_me IS NULL THEN
        RETURN rn_not_registered();
    END IF;
    IF char_length(v_q) NOT BETWEEN 2 AND 32 THEN
        RETURN rn_error(422, 'invalid_query', 'q: the start of a pseudo, 2 to 32 characters');
    END IF;
    v_like := replace(replace(replace(v_q, '\', '\\'), '%', '\%'), '_', '\_') || '%';
    -- a q that cannot start a pseudo ([a-z0-9_.-]) still searches the names
    v_hi := CASE WHEN v_q ~ '^[a-z0-9_.-]+$' THEN left(v_q, -1) || chr(ascii(right(v_q, 1)) + 1)
                 ELSE v_q END;
    SELECT coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
               'pseudo', t.pseudo,
               'relation', CASE WHEN t.status = 'accepted' THEN 'friend'
                                WHEN t.requester_id = v_me THEN 'requested'
                                WHEN t.status = 'pending' THEN 'requested_you'
                                ELSE 'none' END,
               'friendship_id', CASE WHEN t.status IN ('accepted', 'pending') THEN t.fid END,
               'uid', CASE WHEN t.status = 'accepted' THEN t.firebase_uid END,
               'key', t.key)) ORDER BY t.key USING ~<~), '[]'::jsonb)
    INTO v_items
    FROM (SELECT u.pseudo, u.firebase_uid, lower(u.pseudo) AS key,
                 x.id AS fid, x.status, x.requester_id
          FROM users u
          LEFT JOIN friendships x
            ON least(x.requester_id, x.addressee_id) = least(u.id, v_me)
           AND greatest(x.requester_id, x.addressee_id) = greatest(u.id, v_me)
          WHERE u.deleted_at IS NULL AND u.id <> v_me
            AND ((lower(u.pseudo) ~>=~ v_q AND lower(u.pseudo) ~<~ v_hi)
                 OR lower(u.first_name) LIKE v_like ESCAPE '\'
                 OR lower(u.last_name) LIKE v_like ESCAPE '\'
                 OR lower(u.first_name || ' ' || u.last_name) LIKE v_like ESCAPE '\')
            AND (p_cursor IS NULL OR lower(u.pseudo) ~>~ p_cursor)
          ORDER BY lower(u.pseudo) USING ~<~
          LIMIT v_limit + 1) t;
    RETURN rn_answer(200, jsonb_build_object(
        'items', coalesce((SELECT jsonb_agg(e - 'key' ORDER BY n)
                           FROM jsonb_array_elements(v_items) WITH ORDINALITY AS a (e, n)
                           WHERE n <= v_limit), '[]'::jsonb),
        'next_cursor', CASE WHEN jsonb_array_length(v_items) > v_limit
                            THEN v_items -> (v_limit - 1) -> 'key' END));
END
$$;

-- GET /users/profile: the caller's own profile (rn_user_json).
CREATE OR REPLACE FUNCTION rn_profile_get(p_uid text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT rn_answer(200, jsonb_build_object('user', rn_user_json(u)))
           FROM users u WHERE u.firebase_uid = p_uid AND u.deleted_at IS NULL),
        rn_not_registered())
$$;

-- PUT /users/profile {first_name?, last_name?, phone?, pseudo?}: changes the
-- members given (other members are ignored), with the rules of rn_register:
-- pseudo 3-32 of [A-Za-z0-9_.-], unique whatever the case; names
-- 1-64 characters; phone 6-15 digits after an optional "+" (spaces, dots,
-- dashes and brackets dropped), unique; phone null or "" removes it; null
-- for another member changes nothing. 200 {user}; 400 a member of the wrong
-- type; 422 invalid_*; 409 pseudo_taken / phone_taken.
CREATE OR REPLACE FUNCTION rn_profile_update(p_uid text, p_body jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    u users;
    v_pseudo text;
    v_first text;
    v_last text;
    v_phone text;
    v_constraint text;
BEGIN
    SELECT * INTO u FROM users WHERE firebase_uid = p_uid AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_not_registered();
    END IF;
    BEGIN
        v_pseudo := rn_body_field(p_body, 'pseudo', 'string');
        v_first := btrim(rn_body_field(p_body, 'first_name', 'string'));
        v_last := btrim(rn_body_field(p_body, 'last_name', 'string'));
        v_phone := CASE WHEN p_body ? 'phone'
                        THEN nullif(regexp_replace(coalesce(
                                 rn_body_field(p_body, 'phone', 'string'), ''),
                                 '[\s.()-]', '', 'g'), '')
                        ELSE u.phone END;
    EXCEPTION WHEN invalid_parameter_value THEN
        RETURN rn_error(400, 'bad_request', SQLERRM);
    END;
    IF v_pseudo IS DISTINCT FROM u.pseudo AND v_pseudo !~ '^[A-Za-z0-9_.-]{3,32}$' THEN
        RETURN rn_error(422, 'invalid_pseudo',
                        'pseudo: 3 to 32 letters, digits, ".", "_" or "-"');
    END IF;
    IF char_length(v_first) NOT BETWEEN 1 AND 64 OR char_length(v_last) NOT BETWEEN 1 AND 64 THEN
        RETURN rn_error(422, 'invalid_name', 'first_name and last_name: 1 to 64 characters');
    END IF;
    v_pseudo := coalesce(v_pseudo, u.pseudo);
    v_first := coalesce(v_first, u.first_name);
    v_last := coalesce(v_last, u.last_name);
    IF v_phone IS DISTINCT FROM u.phone AND v_phone !~ '^\+?[0-9]{6,15}$' THEN
        RETURN rn_error(422, 'invalid_phone', 'phone: 6 to 15 digits, optionally after "+"');
    END IF;
    IF EXISTS (SELECT 1 FROM users WHERE lower(pseudo) = lower(v_pseudo) AND id <> u.id) THEN
        RETURN rn_error(409, 'pseudo_taken', 'this pseudo is taken',
                        jsonb_build_object('field', 'pseudo'));
    END IF;
    IF v_phone IS NOT NULL AND EXISTS (SELECT 1 FROM users WHERE phone = v_phone AND id <> u.id) THEN
        RETURN rn_error(409, 'phone_taken', 'this phone number is used by another account',
                        jsonb_build_object('field', 'phone'));
    END IF;
    BEGIN
        UPDATE users SET pseudo = v_pseudo, first_name = v_first, last_name = v_last,
                         phone = v_phone
         WHERE id = u.id
        RETURNING * INTO u;
    EXCEPTION WHEN unique_violation THEN
        -- a concurrent change took it first: the same answers as above
        GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
        IF v_constraint = 'users_phone_key' THEN
            RETURN rn_error(409, 'phone_taken', 'this phone number is used by another account',
                            jsonb_build_object('field', 'phone'));
        END IF;
        RETURN rn_error(409, 'pseudo_taken', 'this pseudo is taken',
                        jsonb_build_object('field', 'pseudo'));
    END;
    RETURN rn_answer(200, jsonb_build_object('user', rn_user_json(u)));
END
$$;

-- GET /scores?game_id=&arcade_id=&friends=1&period=: the leaderboard of a
-- game (on one arcade, or everywhere), each live player once with their
-- best score of the period (rolling: day = 24 h, week = 7 days, month = 30
-- days, all), highest first; equal scores share a rank, and the earlier one
-- is listed first. p_friends: the caller and its friends only (p_uid must
-- be registered). Players by pseudo only; "you" marks the caller.
-- p_from / p_to (optional, from included, to excluded) narrow the period.
-- A page of p_limit after p_offset rows; next_cursor is the next offset.
-- 200 {game_id, game, arcade_id, period, from, to, friends, items: [{rank, pseudo,
-- score, at, you}], next_cursor}; 404 game_not_found, arcade_not_found,
-- not_registered (friends only).
CREATE OR REPLACE FUNCTION rn_leaderboard(p_uid text, p_game_id bigint, p_arcade_id bigint,
                               p_friends boolean, p_period text, p_limit integer,
                               p_offset bigint, p_from timestamptz DEFAULT NULL,
                               p_to timestamptz DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_me bigint := rn_user_id(p_uid);
    g games;
    v_since timestamptz := now() - CASE p_period WHEN 'day' THEN interval '1 day'
                                                 WHEN 'week' THEN interval '7 days'
                                                 WHEN 'month' THEN interval '30 days' END;
    v_items jsonb;
BEGIN
    SELECT * INTO g FROM games WHERE id = p_game_id;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'game_not_found', format('no game %s', p_game_id));
    END IF;
    IF p_arcade_id IS NOT NULL AND NOT EXISTS (
           SELECT 1 FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL) THEN
        RETURN rn_error(404, 'arcade_not_found', format('no arcade %s', p_arcade_id));
    END IF;
    IF p_friends AND v_me IS NULL THEN
        RETURN rn_not_registered();
    END IF;
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'rank', t.rank, 'pseudo', t.pseudo, 'score', t.score, 'at', t.at,
               'you', t.user_id IS NOT DISTINCT FROM v_me) ORDER BY t.n), '[]'::jsonb)
    INTO v_items
    FROM (SELECT b.*, u.pseudo,
                 rank() OVER (ORDER BY b.score DESC) AS rank,
                 row_number() OVER (ORDER BY b.score DESC, b.at, b.user_id) AS n
          FROM (SELECT DISTINCT ON (s.user_id) s.user_id, s.score, s.created_at AS at
                FROM scores s
                JOIN reservations r ON r.id = s.reservation_id
                WHERE r.game_id = g.id
                  AND (p_arcade_id IS NULL OR r.arcade_id = p_arcade_id)
                  AND (v_since IS NULL OR s.created_at >= v_since)
                  AND (p_from IS NULL OR s.created_at >= p_from)
                  AND (p_to IS NULL OR s.created_at < p_to)
                  AND (NOT p_friends OR s.user_id = v_me
                       OR s.user_id IN (SELECT rn_friend_ids(v_me)))
                ORDER BY s.user_id, s.score DESC, s.created_at) b
          JOIN users u ON u.id = b.user_id AND u.deleted_at IS NULL
          ORDER BY b.score DESC, b.at, b.user_id
          OFFSET p_offset LIMIT p_limit + 1) t;
    RETURN rn_answer(200, jsonb_build_object(
        'game_id', g.id, 'game', g.name, 'arcade_id', p_arcade_id,
        'period', coalesce(p_period, 'all'), 'from', p_from, 'to', p_to, 'friends', p_friends,
        'items', coalesce((SELECT jsonb_agg(e ORDER BY n) FROM jsonb_array_elements(v_items)
                           WITH ORDINALITY AS a (e, n) WHERE n <= p_limit), '[]'::jsonb),
        'next_cursor', CASE WHEN jsonb_array_length(v_items) > p_limit
                            THEN (p_offset + p_limit)::text END));
END
$$;

-- GET /scores/my-stats: the caller's games (as booker or player 2): played,
-- solo, wins, losses and ties (duos); per game the best and average score,
-- games played and the rank of the caller's best among its friends' bests
-- (friends_rank of friends_ranked, the caller included; ties share); tickets_spent is
-- what its own bookings cost net of refunds (player 2 pays nothing).
CREATE OR REPLACE FUNCTION rn_my_stats(p_uid text)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_me bigint := rn_user_id(p_uid);
    v_totals jsonb;
    v_games jsonb;
BEGIN
    IF v_me IS NULL THEN
        RETURN rn_not_registered();
    END IF;
    SELECT jsonb_build_object(
               'games_played', count(*),
               'solo_games', count(*) FILTER (WHERE r.player2_id IS NULL),
               'wins', count(*) FILTER (WHERE s.is_winner),
               'ties', count(*) FILTER (WHERE s.is_tie),
               'losses', count(*) FILTER (WHERE r.player2_id IS NOT NULL
                                            AND NOT s.is_winner AND NOT s.is_tie))
    INTO v_totals
    FROM scores s JOIN reservations r ON r.id = s.reservation_id
    WHERE s.user_id = v_me;
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'game_id', g.id, 'game', g.name, 'best_score', t.best,
               'average_score', t.average, 'games_played', t.n, 'last_played_at', t.last,
               'friends_rank', 1 + (SELECT count(*) FROM (
                    SELECT max(s.score) AS best FROM scores s
                    JOIN reservations r ON r.id = s.reservation_id
                    WHERE r.game_id = t.game_id AND s.user_id IN (SELECT rn_friend_ids(v_me))
                    GROUP BY s.user_id) f WHERE f.best > t.best),
               'friends_ranked', 1 + (SELECT count(DISTINCT s.user_id) FROM scores s
                    JOIN reservations r ON r.id = s.reservation_id
                    WHERE r.game_id = t.game_id AND s.user_id IN (SELECT rn_friend_ids(v_me))))
               ORDER BY g.id), '[]'::jsonb)
    INTO v_games
    FROM (SELECT r.game_id, max(s.score) AS best, round(avg(s.score), 1) AS average,
                 count(*) AS n, max(s.created_at) AS last
          FROM scores s JOIN reservations r ON r.id = s.reservation_id
          WHERE s.user_id = v_me
          GROUP BY r.game_id) t
    JOIN games g ON g.id = t.game_id;
    RETURN rn_answer(200, v_totals || jsonb_build_object(
        'tickets_spent', (SELECT coalesce(-sum(delta), 0) FROM ledger
                          WHERE user_id = v_me AND kind IN ('reservation', 'refund')),
        'games', v_games));
END
$$;

-- The uids of every deleted user: each hub keeps this set (hub/userstate.c)
-- and refuses their tokens without a query per request.
CREATE OR REPLACE FUNCTION rn_users_deleted()
RETURNS SETOF text LANGUAGE sql STABLE AS $$
    SELECT firebase_uid FROM users WHERE deleted_at IS NOT NULL
$$;

-- ---------------------------------------------------------------------------
-- Public profiles, self delete, export (issue 10 item 8)

-- A player's public numbers: games played, wins, ties, best score per game.
CREATE OR REPLACE FUNCTION rn_public_stats(p_user_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'games_played', (SELECT count(*) FROM scores WHERE user_id = p_user_id),
        'wins', (SELECT count(*) FROM scores WHERE user_id = p_user_id AND is_winner),
        'ties', (SELECT count(*) FROM scores WHERE user_id = p_user_id AND is_tie),
        'games', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                      'game_id', g.id, 'game', g.name, 'best_score', t.best,
                      'games_played', t.n) ORDER BY g.id), '[]'::jsonb)
                  FROM (SELECT r.game_id, max(s.score) AS best, count(*) AS n
                        FROM scores s JOIN reservations r ON r.id = s.reservation_id
                        WHERE s.user_id = p_user_id GROUP BY r.game_id) t
                  JOIN games g ON g.id = t.game_id))
$$;

-- GET /users/{id}: a live player's public profile; {id} is a pseudo (any
-- case) or, for the caller itself and its friends, a uid. 200 {pseudo,
-- member_since, relation: self|friend|none, uid (self and friends only),
-- stats: rn_public_stats}. Never a name, phone or balance. 404
-- user_not_found (unknown, deleted, or a uid of a non-friend: a uid is not
-- public, so it is not confirmed either).
CREATE OR REPLACE FUNCTION rn_public_profile(p_uid text, p_key text)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_me bigint := rn_user_id(p_uid);
    o users;
    v_relation text;
BEGIN
    IF v_me IS NULL THEN
        RETURN rn_not_registered();
    END IF;
    SELECT * INTO o FROM users WHERE lower(pseudo) = lower(p_key) AND deleted_at IS NULL;
    IF NOT FOUND THEN
        SELECT * INTO o FROM users
        WHERE firebase_uid = p_key AND deleted_at IS NULL
          AND (id = v_me OR id IN (SELECT rn_friend_ids(v_me)));
    END IF;
    IF o.id IS NULL THEN
        RETURN rn_error(404, 'user_not_found', 'no such player');
    END IF;
    v_relation := CASE WHEN o.id = v_me THEN 'self'
                       WHEN o.id IN (SELECT rn_friend_ids(v_me)) THEN 'friend' ELSE 'none' END;
    RETURN rn_answer(200, jsonb_build_object(
        'pseudo', o.pseudo, 'member_since', o.created_at, 'relation', v_relation,
        'stats', rn_public_stats(o.id))
        || CASE WHEN v_relation <> 'none' THEN jsonb_build_object('uid', o.firebase_uid)
                ELSE '{}'::jsonb END);
END
$$;

-- Deletes user u (soft: an admin can restore it), in the name of p_by (the
-- user itself, or an admin). The rule both deletes share: waiting
-- reservations (booked or as player 2) are cancelled through rn_cancel, in
-- the name of their booker, whose refund is rn_reservation_refund; a called
-- or playing reservation cannot be cancelled (DESIGN.md): 409
-- has_active_reservations {reservation_ids} (p_busy says it to whom asked),
-- nothing changed. Lock order is the queue's (arcade, then user): the
-- arcades of the user's live reservations first, so none of them can be
-- called meanwhile, the user row last. A reservation whose rn_reserve is
-- still running when the delete commits is not seen here and stays waiting.
-- 200 {uid, deleted_at, cancelled_reservations}, the cancels' events,
-- "arcades" (their new snapshots, for the hub to publish) and an admin_event
-- user_deleted. The hub then closes the user's sockets on every process.
CREATE OR REPLACE FUNCTION rn_user_delete(u users, p_by text, p_busy text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r reservations;
    v_active jsonb;
    v_answer jsonb;
    v_events jsonb := '[]';
    v_arcades jsonb := '[]';
    v_cancelled jsonb := '[]';
BEGIN
    PERFORM 1 FROM arcades
    WHERE id IN (SELECT arcade_id FROM reservations
                 WHERE (user_id = u.id OR player2_id = u.id)
                   AND status IN ('waiting', 'called', 'playing'))
    ORDER BY id
    FOR UPDATE;
    SELECT jsonb_agg(id ORDER BY id) INTO v_active FROM reservations
    WHERE (user_id = u.id OR player2_id = u.id) AND status IN ('called', 'playing');
    IF v_active IS NOT NULL THEN
        RETURN rn_error(409, 'has_active_reservations', p_busy,
                        jsonb_build_object('reservation_ids', v_active));
    END IF;
    FOR r IN SELECT * FROM reservations
             WHERE (user_id = u.id OR player2_id = u.id) AND status = 'waiting'
             ORDER BY id LOOP
        v_answer := rn_cancel((SELECT firebase_uid FROM users WHERE id = r.user_id), r.id);
        IF (v_answer ->> 'status')::integer <> 200 THEN
            RAISE EXCEPTION 'cancelling reservation % of a deleted user: %', r.id,
                v_answer -> 'body';
        END IF;
        v_events := v_events || (v_answer -> 'events');
        v_arcades := v_arcades || jsonb_build_array(v_answer -> 'arcade');
        v_cancelled := v_cancelled || to_jsonb(r.id);
    END LOOP;
    UPDATE users SET deleted_at = now() WHERE id = u.id RETURNING * INTO u;
    RETURN rn_with_audit(
        rn_answer(200, jsonb_build_object('uid', u.firebase_uid, 'deleted_at', u.deleted_at,
                                          'cancelled_reservations', v_cancelled),
                  v_events)
        || jsonb_build_object(
               'arcades', v_arcades,
               'admin_event', jsonb_build_object('kind', 'user_deleted', 'uid', u.firebase_uid,
                                                 'by', p_by,
                                                 'cancelled_reservations', v_cancelled)),
        rn_audit_log(p_by, 'user.delete', 'user', u.firebase_uid,
                     jsonb_build_object('deleted_at', NULL),
                     jsonb_build_object('deleted_at', u.deleted_at,
                                        'cancelled_reservations', v_cancelled)));
END
$$;

-- DELETE /users/profile: the caller deletes its own account (rn_user_delete).
CREATE OR REPLACE FUNCTION rn_user_self_delete(p_uid text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    u users;
BEGIN
    SELECT * INTO u FROM users WHERE firebase_uid = p_uid AND deleted_at IS NULL;
    IF NOT FOUND THEN
        RETURN rn_not_registered();
    END IF;
    RETURN rn_user_delete(u, p_uid,
                          'you are called or playing on a cabinet: try again after that game');
END
$$;

-- GET /users/profile/export: everything the hub holds about the caller, as
-- one JSON document (its profile, friendships, reservations, scores, ledger,
-- purchases, promo code uses). Other players appear by pseudo only.
CREATE OR REPLACE FUNCTION rn_user_export(p_uid text)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    u users;
BEGIN
    SELECT * INTO u FROM users WHERE firebase_uid = p_uid AND deleted_at IS NULL;
    IF NOT FOUND THEN
        RETURN rn_not_registered();
    END IF;
    RETURN rn_answer(200, jsonb_build_object(
        'exported_at', now(),
        'user', rn_user_json(u) || jsonb_build_object('updated_at', u.updated_at),
        'friendships', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                            'id', x.id, 'status', x.status, 'pseudo', o.pseudo,
                            'direction', CASE WHEN x.requester_id = u.id THEN 'outgoing'
                                              ELSE 'incoming' END,
                            'created_at', x.created_at) ORDER BY x.id), '[]'::jsonb)
                        FROM friendships x JOIN users o ON o.id = rn_friend_other(x, u.id)
                        WHERE u.id IN (x.requester_id, x.addressee_id)),
        'reservations', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                             'id', r.id, 'arcade_id', r.arcade_id, 'game_id', r.game_id,
                             'role', CASE WHEN r.user_id = u.id THEN 'booker' ELSE 'player2' END,
                             'status', r.status, 'cost', r.cost, 'called_at', r.called_at,
                             'started_at', r.started_at, 'ended_at', r.ended_at,
                             'created_at', r.created_at) ORDER BY r.id), '[]'::jsonb)
                         FROM reservations r WHERE u.id IN (r.user_id, r.player2_id)),
        'scores', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                       'reservation_id', s.reservation_id, 'score', s.score,
                       'is_winner', s.is_winner, 'is_tie', s.is_tie, 'created_at', s.created_at)
                       ORDER BY s.id), '[]'::jsonb)
                   FROM scores s WHERE s.user_id = u.id),
        'ledger', (SELECT coalesce(jsonb_agg(rn_ledger_json(l) ORDER BY l.id), '[]'::jsonb)
                   FROM ledger l WHERE l.user_id = u.id),
        'purchases', (SELECT coalesce(jsonb_agg(rn_purchase_json(p) ORDER BY p.id), '[]'::jsonb)
                      FROM purchases p WHERE p.user_id = u.id),
        'promo_uses', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                           'code', c.code, 'tickets', c.tickets, 'created_at', pu.created_at)
                           ORDER BY pu.id), '[]'::jsonb)
                       FROM promo_uses pu JOIN promo_codes c ON c.id = pu.promo_id
                       WHERE pu.user_id = u.id)));
END
$$;
