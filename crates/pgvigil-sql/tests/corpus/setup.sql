-- Schema and data for tests/corpus/statements.sql: a small shop (users,
-- orders, products, reviews, events, a job queue) plus pgbench's tables.
-- Run once, before pg_stat_statements is reset, so none of it is measured.

CREATE EXTENSION IF NOT EXISTS pg_stat_statements;

CREATE TABLE organizations (
    id serial PRIMARY KEY,
    name text NOT NULL,
    plan text NOT NULL DEFAULT 'free',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id bigserial PRIMARY KEY,
    org_id int REFERENCES organizations (id),
    email text NOT NULL UNIQUE,
    name text,
    status text NOT NULL DEFAULT 'active',
    age int,
    balance numeric(12, 2) NOT NULL DEFAULT 0,
    settings jsonb NOT NULL DEFAULT '{}',
    tags text[] NOT NULL DEFAULT '{}',
    is_admin boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz,
    deleted_at timestamptz
);

CREATE TABLE categories (
    id serial PRIMARY KEY,
    name text NOT NULL,
    parent_id int REFERENCES categories (id)
);

CREATE TABLE products (
    id serial PRIMARY KEY,
    sku text NOT NULL UNIQUE,
    name text NOT NULL,
    price numeric(10, 2) NOT NULL,
    stock int NOT NULL DEFAULT 0,
    category_id int REFERENCES categories (id),
    attributes jsonb NOT NULL DEFAULT '{}',
    active boolean NOT NULL DEFAULT true,
    search tsvector
);

CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id),
    status text NOT NULL DEFAULT 'pending',
    total numeric(12, 2) NOT NULL DEFAULT 0,
    currency char(3) NOT NULL DEFAULT 'USD',
    metadata jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    shipped_at timestamptz
);

CREATE TABLE order_items (
    id bigserial PRIMARY KEY,
    order_id bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id int NOT NULL REFERENCES products (id),
    quantity int NOT NULL,
    unit_price numeric(10, 2) NOT NULL
);

CREATE TABLE reviews (
    id serial PRIMARY KEY,
    product_id int NOT NULL REFERENCES products (id),
    user_id bigint NOT NULL REFERENCES users (id),
    rating int NOT NULL CHECK (rating BETWEEN 1 AND 5),
    body text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE events (
    id bigserial PRIMARY KEY,
    kind text NOT NULL,
    user_id bigint,
    payload jsonb NOT NULL DEFAULT '{}',
    occurred_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    token text PRIMARY KEY,
    user_id bigint,
    data bytea,
    expires_at timestamptz NOT NULL
);

CREATE TABLE job_queue (
    id bigserial PRIMARY KEY,
    queue text NOT NULL DEFAULT 'default',
    payload jsonb NOT NULL DEFAULT '{}',
    priority int NOT NULL DEFAULT 0,
    run_at timestamptz NOT NULL DEFAULT now(),
    locked_at timestamptz,
    locked_by text,
    attempts int NOT NULL DEFAULT 0,
    last_error text
);

CREATE TABLE counters (
    name text PRIMARY KEY,
    value bigint NOT NULL DEFAULT 0,
    updated_at timestamptz
);

CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    table_name text NOT NULL,
    action text NOT NULL,
    row_data jsonb,
    at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE daily_stats (
    day date NOT NULL,
    metric text NOT NULL,
    value double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (day, metric)
);

-- DDL statements of the corpus work on this table only, so the shapes of
-- the tables the queries read never change between variants.
CREATE TABLE scratch (id int PRIMARY KEY, note text);

CREATE TABLE pgbench_branches (bid int PRIMARY KEY, bbalance int, filler char(88));
CREATE TABLE pgbench_tellers (tid int PRIMARY KEY, bid int, tbalance int, filler char(84));
CREATE TABLE pgbench_accounts (aid int PRIMARY KEY, bid int, abalance int, filler char(84));
CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));

CREATE INDEX orders_user_id_idx ON orders (user_id);
CREATE INDEX order_items_order_id_idx ON order_items (order_id);
CREATE INDEX events_kind_time_idx ON events (kind, occurred_at);
CREATE INDEX users_settings_idx ON users USING gin (settings);
CREATE INDEX products_search_idx ON products USING gin (search);

INSERT INTO organizations (name, plan)
SELECT 'org ' || g, (ARRAY['free', 'pro', 'enterprise'])[1 + g % 3]
FROM generate_series(1, 5) AS g;

INSERT INTO users (org_id, email, name, status, age, balance, settings, tags, is_admin)
SELECT 1 + g % 5, 'user' || g || '@example.com', 'User ' || g,
       (ARRAY['active', 'invited', 'banned'])[1 + g % 3], 18 + g % 50, g * 10.5,
       jsonb_build_object('theme', CASE WHEN g % 2 = 0 THEN 'dark' ELSE 'light' END, 'beta', g % 4 = 0),
       ARRAY['t' || (g % 3), 't' || (g % 5)], g % 10 = 0
FROM generate_series(1, 50) AS g;

INSERT INTO categories (name, parent_id) VALUES ('root', NULL);
INSERT INTO categories (name, parent_id) SELECT 'cat ' || g, 1 FROM generate_series(2, 6) AS g;

INSERT INTO products (sku, name, price, stock, category_id, attributes, search)
SELECT 'SKU-' || g, 'Product ' || g, 5 + g * 1.25, g * 3, 1 + g % 6,
       jsonb_build_object('color', (ARRAY['red', 'green', 'blue'])[1 + g % 3], 'weight', g),
       to_tsvector('english', 'product number ' || g || ' widget gadget')
FROM generate_series(1, 20) AS g;

INSERT INTO orders (user_id, status, total, metadata, created_at)
SELECT 1 + g % 50, (ARRAY['pending', 'paid', 'shipped', 'cancelled'])[1 + g % 4], g * 3.5,
       jsonb_build_object('source', CASE WHEN g % 2 = 0 THEN 'web' ELSE 'app' END),
       now() - g * interval '1 hour'
FROM generate_series(1, 100) AS g;

INSERT INTO order_items (order_id, product_id, quantity, unit_price)
SELECT 1 + g % 100, 1 + g % 20, 1 + g % 4, 5 + (g % 20) * 1.25
FROM generate_series(1, 300) AS g;

INSERT INTO reviews (product_id, user_id, rating, body)
SELECT 1 + g % 20, 1 + g % 50, 1 + g % 5, 'review ' || g FROM generate_series(1, 80) AS g;

INSERT INTO events (kind, user_id, payload, occurred_at)
SELECT (ARRAY['login', 'view', 'purchase'])[1 + g % 3], 1 + g % 50,
       jsonb_build_object('path', '/p/' || g, 'ms', g % 700), now() - g * interval '5 minutes'
FROM generate_series(1, 200) AS g;

INSERT INTO counters (name, value) VALUES ('hits', 0), ('signups', 0), ('orders', 0);

INSERT INTO job_queue (queue, payload, priority)
SELECT (ARRAY['default', 'mailers'])[1 + g % 2], jsonb_build_object('job', g), g % 3
FROM generate_series(1, 30) AS g;

INSERT INTO pgbench_branches SELECT b, 0 FROM generate_series(1, 2) AS b;
INSERT INTO pgbench_tellers SELECT t, 1 + t % 2, 0 FROM generate_series(1, 20) AS t;
INSERT INTO pgbench_accounts SELECT a, 1 + a % 2, 0, '' FROM generate_series(1, 10000) AS a;

CREATE VIEW active_users AS SELECT * FROM users WHERE deleted_at IS NULL AND status = 'active';

CREATE MATERIALIZED VIEW product_ratings AS
SELECT product_id, count(*) AS reviews, avg(rating) AS rating FROM reviews GROUP BY product_id;

CREATE FUNCTION user_order_count(uid bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$ SELECT count(*) FROM orders WHERE user_id = uid $$;

CREATE PROCEDURE bump_counter(counter text, delta int)
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE counters SET value = value + delta, updated_at = now() WHERE name = counter;
END
$$;

CREATE SEQUENCE invoice_number_seq START 1000;

ANALYZE;
