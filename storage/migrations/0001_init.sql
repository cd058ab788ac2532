-- 0001_init: the whole schema of DESIGN.md (PostgreSQL 15).
--
-- Schema only; the business functions (reserve, cancel, purchase, ...) live in
-- storage/sql (one file per domain). The runner applies this file inside one transaction
-- together with its schema_migrations row, so it has no BEGIN/COMMIT of its own.
--
-- Conventions:
--   * every id is bigint (bigserial); every table has created_at/updated_at,
--     and rn_touch_updated_at() bumps updated_at on every UPDATE;
--   * rows that carry money or history (ledger, purchases, reservations,
--     scores, promo uses) never disappear with a user: users are soft-deleted
--     (deleted_at), and their foreign keys keep the default NO ACTION;
--   * the books balance: users.tickets_balance = sum(ledger.delta) per user.
--     The ledger is append-only (a trigger refuses UPDATE and DELETE) and its
--     partial unique indexes make a double credit, debit or refund impossible.

CREATE FUNCTION rn_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- Players and admins. A user is known by the Firebase uid of its token.
CREATE TABLE users (
    id              bigserial PRIMARY KEY,
    firebase_uid    text NOT NULL UNIQUE
                    CHECK (char_length(firebase_uid) BETWEEN 1 AND 128),
    pseudo          text NOT NULL CHECK (char_length(pseudo) BETWEEN 1 AND 64),
    first_name      text,
    last_name       text,
    phone           text UNIQUE,
    role            text NOT NULL DEFAULT 'player' CHECK (role IN ('player', 'admin')),
    tickets_balance integer NOT NULL DEFAULT 0 CHECK (tickets_balance >= 0),
    deleted_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- Pseudos are unique whatever their case, deleted users included (they can be restored).
CREATE UNIQUE INDEX users_pseudo_lower_key ON users (lower(pseudo));
CREATE TRIGGER users_touch BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION rn_touch_updated_at();

-- One row per unordered pair of users, whoever asked first.
CREATE TABLE friendships (
    id           bigserial PRIMARY KEY,
    requester_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    addressee_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'accepted', 'rejected')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT friendships_not_self CHECK (requester_id <> addressee_id)
);
CREATE UNIQUE INDEX friendships_pair_key
    ON friendships (least(requester_id, addressee_id), greatest(requester_id, addressee_id));
CREATE INDEX friendships_requester_idx ON friendships (requester_id, status);
CREATE INDEX friendships_addressee_idx ON friendships (addressee_id, status);
CREATE TRIGGER friendships_touch BEFORE UPDATE ON friendships
    FOR EACH ROW EXECUTE FUNCTION rn_touch_updated_at();

CREATE TABLE games (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (char_length(name) BETWEEN 1 AND 100),
    description text NOT NULL DEFAULT '',
    min_players integer NOT NULL DEFAULT 1 CHECK (min_players BETWEEN 1 AND 2),
    max_players integer NOT NULL DEFAULT 1 CHECK (max_players BETWEEN 1 AND 2),
    ticket_cost integer NOT NULL CHECK (ticket_cost > 0),
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT games_players_range CHECK (min_players <= max_players)
);
CREATE TRIGGER games_touch BEFORE UPDATE ON games
    FOR EACH ROW EXECUTE FUNCTION rn_touch_updated_at();

-- A cabinet. queue_version is bumped by every mutation of its queue, under the
-- row lock: it orders the events published for this arcade.
CREATE TABLE arcades (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    location      text NOT NULL DEFAULT '',
    api_key_hash  text CHECK (api_key_hash ~ '^[0-9a-f]{64}$'), -- hex SHA-256 of the key
    status        text NOT NULL DEFAULT 'offline'
                  CHECK (status IN ('idle', 'playing', 'maintenance', 'offline')),
    queue_version bigint NOT NULL DEFAULT 0 CHECK (queue_version >= 0),
    deleted_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- A cabinet authenticates with its key alone: look it up by hash.
CREATE UNIQUE INDEX arcades_api_key_hash_key ON arcades (api_key_hash)
    WHERE api_key_hash IS NOT NULL;
CREATE TRIGGER arcades_touch BEFORE UPDATE ON arcades
    FOR EACH ROW EXECUTE FUNCTION rn_touch_updated_at();

-- Which game sits in which slot of which cabinet.
CREATE TABLE arcade_games (
    arcade_id  bigint NOT NULL REFERENCES arcades (id) ON DELETE CASCADE,
    game_id    bigint NOT NULL REFERENCES games (id),
    slot       integer NOT NULL CHECK (slot >= 1),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (arcade_id, slot),
    CONSTRAINT arcade_games_game_once UNIQUE (arcade_id, game_id)
);
CREATE INDEX arcade_games_game_idx ON arcade_games (game_id);
CREATE TRIGGER arcade_games_touch BEFORE UPDATE ON arcade_games
    FOR EACH ROW EXECUTE FUNCTION rn_touch_updated_at();

-- The queues. waiting -> called -> playing -> completed; waiting -> cancelled
-- (refund); called -> expired (no-show); any -> voided by an admin (refund).
CREATE TABLE reservations (
    id          bigserial PRIMARY KEY,
    arcade_id   bigint NOT NULL REFERENCES arcades (id),
    game_id     bigint NOT NULL REFERENCES games (id),
    user_id     bigint NOT NULL REFERENCES users (id), -- booked and paid
    player2_id  bigint REFERENCES users (id),
    status      text NOT NULL DEFAULT 'waiting'
                CHECK (status IN ('waiting', 'called', 'playing', 'completed',
                                  'cancelled', 'expired', 'voided')),
    unlock_code text NOT NULL CHECK (unlock_code ~ '^[0-9]{6}$'),
    cost        integer NOT NULL CHECK (cost > 0),
    called_at   timestamptz,
    deadline    timestamptz,
    started_at  timestamptz,
    ended_at    timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reservations_player2_other CHECK (player2_id IS NULL OR player2_id <> user_id),
    CONSTRAINT reservations_called_deadline CHECK (status <> 'called' OR deadline IS NOT NULL)
);
CREATE INDEX reservations_queue_idx ON reservations (arcade_id, status, id);
CREATE INDEX reservations_user_idx ON reservations (user_id, id);
CREATE INDEX reservations_player2_idx ON reservations (player2_id, id) WHERE player2_id IS NOT NULL;
CREATE INDEX reservations_game_idx ON reservations (game_id);
-- A cabinet serves one reservation at a time: at most one called or playing
-- per arcade, whichever hub process tries to call the next one.
CREATE UNIQUE INDEX reservations_one_active_per_arcade ON reservations (arcade_id)
    WHERE status IN ('called', 'playing');
CREATE TRIGGER reservations_touch BEFORE UPDATE ON reservations
    FOR EACH ROW EXECUTE FUNCTION rn_touch_updated_at();

CREATE TABLE scores (
    id             bigserial PRIMARY KEY,
    reservation_id bigint NOT NULL REFERENCES reservations (id),
    user_id        bigint NOT NULL REFERENCES users (id),
    score          bigint NOT NULL,
    is_winner      boolean NOT NULL DEFAULT false,
    is_tie         boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT scores_one_per_player UNIQUE (reservation_id, user_id),
    CONSTRAINT scores_win_or_tie CHECK (NOT (is_winner AND is_tie))
);
CREATE INDEX scores_user_idx ON scores (user_id, created_at);
CREATE INDEX scores_created_idx ON scores (created_at);
CREATE TRIGGER scores_touch BEFORE UPDATE ON scores
    FOR EACH ROW EXECUTE FUNCTION rn_touch_updated_at();

CREATE TABLE ticket_offers (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    tickets     integer NOT NULL CHECK (tickets > 0),
    price_cents integer NOT NULL CHECK (price_cents >= 0),
    currency    char(3) NOT NULL DEFAULT 'EUR' CHECK (currency ~ '^[A-Z]{3}$'),
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER ticket_offers_touch BEFORE UPDATE ON ticket_offers
    FOR EACH ROW EXECUTE FUNCTION rn_touch_updated_at();

-- A purchase keeps the offer's terms as they were when it was made. No card
-- data: provider_ref is the provider's id for the payment.
CREATE TABLE purchases (
    id           bigserial PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id),
    offer_id     bigint NOT NULL REFERENCES ticket_offers (id),
    tickets      integer NOT NULL CHECK (tickets > 0),
    price_cents  integer NOT NULL CHECK (price_cents >= 0),
    currency     char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    provider     text NOT NULL,
    provider_ref text,
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'succeeded', 'failed')),
    failure      text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX purchases_provider_ref_key ON purchases (provider, provider_ref)
    WHERE provider_ref IS NOT NULL;
CREATE INDEX purchases_user_idx ON purchases (user_id, id);
CREATE INDEX purchases_offer_idx ON purchases (offer_id);
CREATE TRIGGER purchases_touch BEFORE UPDATE ON purchases
    FOR EACH ROW EXECUTE FUNCTION rn_touch_updated_at();

-- Codes are stored upper-case; the application upper-cases what users type.
CREATE TABLE promo_codes (
    id          bigserial PRIMARY KEY,
    code        text NOT NULL UNIQUE
                CHECK (char_length(code) BETWEEN 1 AND 64 AND code = upper(code)),
    tickets     integer NOT NULL CHECK (tickets > 0),
    max_uses    integer CHECK (max_uses > 0), -- NULL: unlimited
    uses        integer NOT NULL DEFAULT 0 CHECK (uses >= 0),
    valid_from  timestamptz NOT NULL DEFAULT now(),
    valid_until timestamptz, -- NULL: no end
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT promo_codes_uses_limit CHECK (max_uses IS NULL OR uses <= max_uses),
    CONSTRAINT promo_codes_window CHECK (valid_until IS NULL OR valid_until > valid_from)
);
CREATE TRIGGER promo_codes_touch BEFORE UPDATE ON promo_codes
    FOR EACH ROW EXECUTE FUNCTION rn_touch_updated_at();

-- One use of a code per user.
CREATE TABLE promo_uses (
    id         bigserial PRIMARY KEY,
    promo_id   bigint NOT NULL REFERENCES promo_codes (id),
    user_id    bigint NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT promo_uses_once_per_user UNIQUE (promo_id, user_id)
);
CREATE INDEX promo_uses_user_idx ON promo_uses (user_id, id);
CREATE TRIGGER promo_uses_touch BEFORE UPDATE ON promo_uses
    FOR EACH ROW EXECUTE FUNCTION rn_touch_updated_at();

-- The ticket books. Every change of users.tickets_balance writes one row here
-- in the same transaction, with the balance it left behind.
CREATE TABLE ledger (
    id             bigserial PRIMARY KEY,
    user_id        bigint NOT NULL REFERENCES users (id),
    delta          integer NOT NULL CHECK (delta <> 0),
    balance_after  integer NOT NULL CHECK (balance_after >= 0),
    kind           text NOT NULL
                   CHECK (kind IN ('purchase', 'promo', 'reservation', 'refund',
                                   'adjustment', 'reversal')),
    purchase_id    bigint REFERENCES purchases (id),
    promo_use_id   bigint REFERENCES promo_uses (id),
    reservation_id bigint REFERENCES reservations (id),
    reason         text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    -- Each kind says which way it moves and what it refers to.
    CONSTRAINT ledger_purchase_ref CHECK (kind <> 'purchase' OR (purchase_id IS NOT NULL AND delta > 0)),
    CONSTRAINT ledger_promo_ref CHECK (kind <> 'promo' OR (promo_use_id IS NOT NULL AND delta > 0)),
    CONSTRAINT ledger_reservation_ref CHECK (kind <> 'reservation' OR (reservation_id IS NOT NULL AND delta < 0)),
    CONSTRAINT ledger_refund_ref CHECK (kind <> 'refund' OR (reservation_id IS NOT NULL AND delta > 0)),
    CONSTRAINT ledger_adjustment_reason CHECK (kind <> 'adjustment' OR reason IS NOT NULL)
);
CREATE INDEX ledger_user_idx ON ledger (user_id, id);
-- Credited once, debited once, refunded once, reversed once.
CREATE UNIQUE INDEX ledger_purchase_once ON ledger (purchase_id) WHERE kind = 'purchase';
CREATE UNIQUE INDEX ledger_reversal_once ON ledger (purchase_id)
    WHERE kind = 'reversal' AND purchase_id IS NOT NULL;
CREATE UNIQUE INDEX ledger_promo_once ON ledger (promo_use_id) WHERE kind = 'promo';
CREATE UNIQUE INDEX ledger_reservation_once ON ledger (reservation_id) WHERE kind = 'reservation';
CREATE UNIQUE INDEX ledger_refund_once ON ledger (reservation_id) WHERE kind = 'refund';

CREATE FUNCTION rn_ledger_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'correct a mistake with a new row (kind adjustment or reversal)';
END
$$;
CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION rn_ledger_append_only();

-- Private events that must reach a device: a user's phone(s) or a cabinet
-- (its inbox). Delivered in id order, kept until the device acks them.
CREATE TABLE user_events (
    id         bigserial PRIMARY KEY,
    user_id    bigint REFERENCES users (id) ON DELETE CASCADE,
    arcade_id  bigint REFERENCES arcades (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (char_length(kind) BETWEEN 1 AND 64),
    payload    jsonb NOT NULL DEFAULT '{}',
    acked_at   timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT user_events_one_recipient CHECK (num_nonnulls(user_id, arcade_id) = 1)
);
CREATE INDEX user_events_user_unacked_idx ON user_events (user_id, id)
    WHERE acked_at IS NULL AND user_id IS NOT NULL;
CREATE INDEX user_events_arcade_unacked_idx ON user_events (arcade_id, id)
    WHERE acked_at IS NULL AND arcade_id IS NOT NULL;
CREATE INDEX user_events_created_idx ON user_events (created_at);
CREATE TRIGGER user_events_touch BEFORE UPDATE ON user_events
    FOR EACH ROW EXECUTE FUNCTION rn_touch_updated_at();

-- Idempotency-Key replay store: same key + same request_hash replays the
-- stored response; same key + other hash is refused (422).
CREATE TABLE idempotency_keys (
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key          text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    request_hash text NOT NULL,
    status_code  integer CHECK (status_code BETWEEN 100 AND 599),
    response     text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
CREATE TRIGGER idempotency_keys_touch BEFORE UPDATE ON idempotency_keys
    FOR EACH ROW EXECUTE FUNCTION rn_touch_updated_at();

-- Payment webhooks seen, deduplicated by the provider's event id in the same
-- transaction as the credit.
CREATE TABLE webhook_events (
    event_id    text PRIMARY KEY CHECK (char_length(event_id) BETWEEN 1 AND 255),
    provider    text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER webhook_events_touch BEFORE UPDATE ON webhook_events
    FOR EACH ROW EXECUTE FUNCTION rn_touch_updated_at();
