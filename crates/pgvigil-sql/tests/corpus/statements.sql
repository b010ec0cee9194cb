-- Corpus for tests/pgss_agreement.rs: realistic statements, each in two or
-- three variants that differ only in constants (and sometimes in case,
-- whitespace or comments). Every variant is sent as one simple-query
-- message, so a variant may hold several statements.
--
-- Format:
--   -- @group NAME          starts a group; NAME is unique
--   -- @differs REASON      an intended difference from PostgreSQL 15 that
--                           this group shows (see DIFFERENCES in the test)
--   -- @before SQL          run before each variant, not measured
--   -- @after SQL           run after each variant, not measured
--   any other line          one variant; a line ending in " \" continues
--                           on the next line (joined with a newline)
--   lines starting "--"     comments of this file
--
-- Groups must be distinct statements for PostgreSQL too: two groups that
-- differ only in aliases, `*` versus the full column list, or `JOIN` versus
-- `INNER JOIN` would share a query id.

-- ===================================================== ORM point lookups

-- @group django_get_user_by_pk
SELECT "users"."id", "users"."email", "users"."name", "users"."status" FROM "users" WHERE "users"."id" = 1 LIMIT 21
SELECT "users"."id", "users"."email", "users"."name", "users"."status" FROM "users" WHERE "users"."id" = 42 LIMIT 21
select "users"."id", "users"."email", "users"."name", "users"."status" from "users" where "users"."id" = 7 limit 21

-- @group rails_find_by_email
SELECT "users".* FROM "users" WHERE "users"."email" = 'user1@example.com' LIMIT 1
SELECT "users".* FROM "users" WHERE "users"."email" = 'user2@example.com' LIMIT 1 /*application='Shop',controller='sessions',action='create'*/
SELECT "users".* FROM "users" WHERE "users"."email" = 'nobody@example.com' LIMIT 1

-- @group hibernate_find_product
select p1_0.id,p1_0.sku,p1_0.name,p1_0.price,p1_0.stock from products p1_0 where p1_0.id=3
select p1_0.id,p1_0.sku,p1_0.name,p1_0.price,p1_0.stock from products p1_0 where p1_0.id=15
SELECT p1_0.id, p1_0.sku, p1_0.name, p1_0.price, p1_0.stock FROM products p1_0 WHERE p1_0.id = 99

-- @group sqlalchemy_user_by_status_and_age
SELECT users.id AS users_id, users.name AS users_name FROM users WHERE users.status = 'active' AND users.age > 30
SELECT users.id AS users_id, users.name AS users_name FROM users WHERE users.status = 'banned' AND users.age > 21
SELECT users.id AS users_id, users.name AS users_name FROM users WHERE users.status = 'invited' AND users.age > 65

-- @group prisma_find_first_order
SELECT "public"."orders"."id", "public"."orders"."status", "public"."orders"."total" FROM "public"."orders" WHERE ("public"."orders"."user_id" = 5 AND 1=1) ORDER BY "public"."orders"."id" ASC LIMIT 1 OFFSET 0
SELECT "public"."orders"."id", "public"."orders"."status", "public"."orders"."total" FROM "public"."orders" WHERE ("public"."orders"."user_id" = 17 AND 1=1) ORDER BY "public"."orders"."id" ASC LIMIT 1 OFFSET 0
SELECT "public"."orders"."id", "public"."orders"."status", "public"."orders"."total" FROM "public"."orders" WHERE ("public"."orders"."user_id" = 3 AND 1=1) ORDER BY "public"."orders"."id" ASC LIMIT 10 OFFSET 20

-- @group sequelize_find_all_products_by_category
SELECT "id", "name", "price" FROM "products" AS "Product" WHERE "Product"."category_id" = 2 AND "Product"."active" = true ORDER BY "Product"."price" DESC LIMIT 20
SELECT "id", "name", "price" FROM "products" AS "Product" WHERE "Product"."category_id" = 4 AND "Product"."active" = false ORDER BY "Product"."price" DESC LIMIT 50

-- @group gorm_first_session
SELECT * FROM "sessions" WHERE token = 'abc123' AND expires_at > '2024-01-01 00:00:00' ORDER BY "sessions"."token" LIMIT 1
SELECT * FROM "sessions" WHERE token = 'zzz999' AND expires_at > '2025-06-30 12:00:00+02' ORDER BY "sessions"."token" LIMIT 1

-- @group ecto_user_count_by_org
SELECT count(u0."id") FROM "users" AS u0 WHERE (u0."org_id" = 2)
SELECT count(u0."id") FROM "users" AS u0 WHERE (u0."org_id" = 4)

-- @group django_exists_check
SELECT 1 AS "a" FROM "users" WHERE "users"."email" = 'user3@example.com' LIMIT 1
SELECT 1 AS "a" FROM "users" WHERE "users"."email" = 'x@y.z' LIMIT 1

-- @group django_count_active
SELECT COUNT(*) AS "__count" FROM "users" WHERE ("users"."deleted_at" IS NULL AND "users"."status" = 'active')
SELECT COUNT(*) AS "__count" FROM "users" WHERE ("users"."deleted_at" IS NULL AND "users"."status" = 'banned')

-- @group rails_pluck_ids
SELECT "orders"."id" FROM "orders" WHERE "orders"."status" = 'paid' AND "orders"."created_at" >= '2024-01-01' ORDER BY "orders"."created_at" DESC
SELECT "orders"."id" FROM "orders" WHERE "orders"."status" = 'shipped' AND "orders"."created_at" >= '2023-06-15' ORDER BY "orders"."created_at" DESC

-- @group active_users_view
SELECT id, email FROM active_users WHERE org_id = 1 ORDER BY created_at DESC LIMIT 5
SELECT id, email FROM active_users WHERE org_id = 3 ORDER BY created_at DESC LIMIT 15

-- @group user_by_lower_email
SELECT id FROM users WHERE lower(email) = lower('User1@Example.com')
SELECT id FROM users WHERE lower(email) = lower('SOMEONE@example.com')

-- @group quoted_identifier_case
SELECT "id", "name" FROM "organizations" WHERE "plan" = 'pro'
SELECT "id", "name" FROM "organizations" WHERE "plan" = 'free'
SELECT ID, NAME FROM ORGANIZATIONS WHERE PLAN = 'enterprise'

-- ============================================================ joins

-- @group orders_with_user_join
SELECT o.id, o.total, u.email FROM orders o JOIN users u ON u.id = o.user_id WHERE o.status = 'paid' AND o.total > 100.0 ORDER BY o.total DESC LIMIT 10
SELECT o.id, o.total, u.email FROM orders o JOIN users u ON u.id = o.user_id WHERE o.status = 'pending' AND o.total > 5.5 ORDER BY o.total DESC LIMIT 25

-- @group order_items_three_way_join
SELECT oi.quantity, oi.unit_price, p.name, o.created_at FROM order_items oi INNER JOIN orders o ON o.id = oi.order_id INNER JOIN products p ON p.id = oi.product_id WHERE o.user_id = 7
SELECT oi.quantity, oi.unit_price, p.name, o.created_at FROM order_items oi INNER JOIN orders o ON o.id = oi.order_id INNER JOIN products p ON p.id = oi.product_id WHERE o.user_id = 12

-- @group left_join_orders_count
SELECT u.id, count(o.id) AS orders FROM users u LEFT JOIN orders o ON o.user_id = u.id AND o.status <> 'cancelled' WHERE u.org_id = 1 GROUP BY u.id
SELECT u.id, count(o.id) AS orders FROM users u LEFT JOIN orders o ON o.user_id = u.id AND o.status <> 'pending' WHERE u.org_id = 5 GROUP BY u.id

-- @group left_join_is_null_anti
SELECT u.id, u.email FROM users u LEFT OUTER JOIN orders o ON o.user_id = u.id WHERE o.id IS NULL AND u.created_at < '2030-01-01'
SELECT u.id, u.email FROM users u LEFT OUTER JOIN orders o ON o.user_id = u.id WHERE o.id IS NULL AND u.created_at < '2020-01-01'

-- @group right_join_categories
SELECT c.name, p.name FROM products p RIGHT JOIN categories c ON c.id = p.category_id WHERE c.parent_id = 1
SELECT c.name, p.name FROM products p RIGHT JOIN categories c ON c.id = p.category_id WHERE c.parent_id = 2

-- @group full_join_reviews
SELECT p.id, r.rating FROM products p FULL OUTER JOIN reviews r ON r.product_id = p.id WHERE coalesce(r.rating, 0) >= 3
SELECT p.id, r.rating FROM products p FULL OUTER JOIN reviews r ON r.product_id = p.id WHERE coalesce(r.rating, 5) >= 1

-- @group join_using
SELECT order_id, sum(quantity) FROM order_items JOIN orders ON orders.id = order_items.order_id WHERE orders.currency = 'USD' GROUP BY order_id HAVING sum(quantity) > 2
SELECT order_id, sum(quantity) FROM order_items JOIN orders ON orders.id = order_items.order_id WHERE orders.currency = 'EUR' GROUP BY order_id HAVING sum(quantity) > 10

-- @group lateral_latest_orders
SELECT u.id, recent.id, recent.total FROM users u CROSS JOIN LATERAL (SELECT id, total FROM orders WHERE user_id = u.id ORDER BY created_at DESC LIMIT 3) recent WHERE u.org_id = 2
SELECT u.id, recent.id, recent.total FROM users u CROSS JOIN LATERAL (SELECT id, total FROM orders WHERE user_id = u.id ORDER BY created_at DESC LIMIT 1) recent WHERE u.org_id = 4

-- @group self_join_categories
SELECT child.name, parent.name FROM categories child JOIN categories parent ON parent.id = child.parent_id WHERE child.id > 1
SELECT child.name, parent.name FROM categories child JOIN categories parent ON parent.id = child.parent_id WHERE child.id > 4

-- @group join_with_or_conditions
SELECT o.id FROM orders o JOIN users u ON u.id = o.user_id WHERE (u.is_admin = true OR o.total > 250) AND o.currency = 'USD'
SELECT o.id FROM orders o JOIN users u ON u.id = o.user_id WHERE (u.is_admin = false OR o.total > 1) AND o.currency = 'GBP'

-- ========================================================= aggregates

-- @group revenue_by_status
SELECT status, count(*), sum(total), avg(total) FROM orders WHERE created_at > now() - interval '7 days' GROUP BY status
SELECT status, count(*), sum(total), avg(total) FROM orders WHERE created_at > now() - interval '30 days' GROUP BY status

-- @group group_by_ordinal
SELECT status, currency, count(*) FROM orders GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 5
SELECT status, currency, count(*) FROM orders GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 8

-- @group order_by_ordinal_desc
SELECT name, price FROM products WHERE stock > 0 ORDER BY 2 DESC, 1
SELECT name, price FROM products WHERE stock > 25 ORDER BY 2 DESC, 1

-- @group having_count
SELECT user_id FROM orders GROUP BY user_id HAVING count(*) > 2 AND sum(total) > 50
SELECT user_id FROM orders GROUP BY user_id HAVING count(*) > 5 AND sum(total) > 1000

-- @group count_distinct
SELECT count(DISTINCT user_id) FROM events WHERE kind = 'login' AND occurred_at > '2024-01-01'
SELECT count(DISTINCT user_id) FROM events WHERE kind = 'purchase' AND occurred_at > '2022-03-01'

-- @group aggregate_filter
SELECT count(*) FILTER (WHERE rating >= 4), count(*) FILTER (WHERE rating <= 2) FROM reviews WHERE product_id = 3
SELECT count(*) FILTER (WHERE rating >= 5), count(*) FILTER (WHERE rating <= 1) FROM reviews WHERE product_id = 9

-- @group grouping_sets
SELECT status, currency, sum(total) FROM orders WHERE total > 10 GROUP BY GROUPING SETS ((status), (currency), ())
SELECT status, currency, sum(total) FROM orders WHERE total > 99 GROUP BY GROUPING SETS ((status), (currency), ())

-- @group rollup_by_day
SELECT date_trunc('day', occurred_at) AS day, kind, count(*) FROM events GROUP BY ROLLUP (1, 2) ORDER BY 1
SELECT date_trunc('hour', occurred_at) AS day, kind, count(*) FROM events GROUP BY ROLLUP (1, 2) ORDER BY 1

-- @group string_agg_emails
SELECT org_id, string_agg(email, ', ' ORDER BY email) FROM users WHERE age BETWEEN 20 AND 40 GROUP BY org_id
SELECT org_id, string_agg(email, '; ' ORDER BY email) FROM users WHERE age BETWEEN 30 AND 35 GROUP BY org_id

-- @group array_agg_tags
SELECT array_agg(DISTINCT t) FROM users, unnest(tags) AS t WHERE org_id = 1
SELECT array_agg(DISTINCT t) FROM users, unnest(tags) AS t WHERE org_id = 2

-- @group percentile
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY total), percentile_cont(0.95) WITHIN GROUP (ORDER BY total) FROM orders
SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY total), percentile_cont(0.99) WITHIN GROUP (ORDER BY total) FROM orders

-- @group min_max_price
SELECT min(price), max(price) FROM products WHERE category_id = 2 AND active
SELECT min(price), max(price) FROM products WHERE category_id = 5 AND active

-- @group bool_aggregates
SELECT bool_and(is_admin), bool_or(age > 60) FROM users WHERE org_id = 3
SELECT bool_and(is_admin), bool_or(age > 18) FROM users WHERE org_id = 1

-- ================================================================ CTEs

-- @group cte_top_customers
WITH totals AS (SELECT user_id, sum(total) AS spent FROM orders WHERE status = 'paid' GROUP BY user_id) SELECT u.email, t.spent FROM totals t JOIN users u ON u.id = t.user_id WHERE t.spent > 100 ORDER BY t.spent DESC LIMIT 10
WITH totals AS (SELECT user_id, sum(total) AS spent FROM orders WHERE status = 'shipped' GROUP BY user_id) SELECT u.email, t.spent FROM totals t JOIN users u ON u.id = t.user_id WHERE t.spent > 5 ORDER BY t.spent DESC LIMIT 3

-- @group cte_recursive_categories
WITH RECURSIVE tree AS (SELECT id, name, parent_id, 1 AS depth FROM categories WHERE id = 1 UNION ALL SELECT c.id, c.name, c.parent_id, t.depth + 1 FROM categories c JOIN tree t ON c.parent_id = t.id WHERE t.depth < 5) SELECT * FROM tree
WITH RECURSIVE tree AS (SELECT id, name, parent_id, 1 AS depth FROM categories WHERE id = 2 UNION ALL SELECT c.id, c.name, c.parent_id, t.depth + 1 FROM categories c JOIN tree t ON c.parent_id = t.id WHERE t.depth < 10) SELECT * FROM tree

-- @group cte_recursive_series
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) SELECT sum(i) FROM n
WITH RECURSIVE n(i) AS (SELECT 5 UNION ALL SELECT i + 2 FROM n WHERE i < 100) SELECT sum(i) FROM n

-- @group cte_materialized
WITH recent AS MATERIALIZED (SELECT * FROM events WHERE occurred_at > now() - interval '1 hour') SELECT kind, count(*) FROM recent GROUP BY kind
WITH recent AS MATERIALIZED (SELECT * FROM events WHERE occurred_at > now() - interval '2 days') SELECT kind, count(*) FROM recent GROUP BY kind

-- @group cte_data_modifying
WITH moved AS (DELETE FROM job_queue WHERE attempts > 10 AND queue = 'default' RETURNING *) INSERT INTO audit_log (table_name, action, row_data) SELECT 'job_queue', 'purge', to_jsonb(moved) FROM moved
WITH moved AS (DELETE FROM job_queue WHERE attempts > 99 AND queue = 'mailers' RETURNING *) INSERT INTO audit_log (table_name, action, row_data) SELECT 'jobs', 'expire', to_jsonb(moved) FROM moved

-- @group cte_update_returning
WITH upd AS (UPDATE counters SET value = value + 1 WHERE name = 'hits' RETURNING value) SELECT value FROM upd
WITH upd AS (UPDATE counters SET value = value + 5 WHERE name = 'orders' RETURNING value) SELECT value FROM upd

-- @group cte_two_ctes
WITH a AS (SELECT id FROM users WHERE age > 30), b AS (SELECT user_id FROM orders WHERE total > 20) SELECT count(*) FROM a JOIN b ON a.id = b.user_id
WITH a AS (SELECT id FROM users WHERE age > 50), b AS (SELECT user_id FROM orders WHERE total > 200) SELECT count(*) FROM a JOIN b ON a.id = b.user_id

-- ======================================================= window functions

-- @group window_row_number
SELECT id, user_id, total, row_number() OVER (PARTITION BY user_id ORDER BY created_at DESC) AS rn FROM orders WHERE status = 'paid'
SELECT id, user_id, total, row_number() OVER (PARTITION BY user_id ORDER BY created_at DESC) AS rn FROM orders WHERE status = 'cancelled'

-- @group window_top_n_per_group
SELECT * FROM (SELECT id, category_id, price, rank() OVER (PARTITION BY category_id ORDER BY price DESC) AS r FROM products) ranked WHERE r <= 3
SELECT * FROM (SELECT id, category_id, price, rank() OVER (PARTITION BY category_id ORDER BY price DESC) AS r FROM products) ranked WHERE r <= 1

-- @group window_running_total
SELECT id, total, sum(total) OVER (ORDER BY created_at ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) FROM orders WHERE user_id = 4
SELECT id, total, sum(total) OVER (ORDER BY created_at ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) FROM orders WHERE user_id = 9

-- @group window_moving_average
SELECT occurred_at, avg((payload->>'ms')::int) OVER (ORDER BY occurred_at ROWS BETWEEN 5 PRECEDING AND CURRENT ROW) FROM events WHERE kind = 'view'
SELECT occurred_at, avg((payload->>'ms')::int) OVER (ORDER BY occurred_at ROWS BETWEEN 20 PRECEDING AND CURRENT ROW) FROM events WHERE kind = 'login'

-- @group window_lag_lead
SELECT id, total - lag(total, 1, 0) OVER w, lead(total, 2) OVER w FROM orders WHERE currency = 'USD' WINDOW w AS (PARTITION BY user_id ORDER BY id)
SELECT id, total - lag(total, 3, 0) OVER w, lead(total, 1) OVER w FROM orders WHERE currency = 'EUR' WINDOW w AS (PARTITION BY user_id ORDER BY id)

-- @group window_ntile_percent_rank
SELECT id, ntile(4) OVER (ORDER BY balance), percent_rank() OVER (ORDER BY age) FROM users WHERE status <> 'banned'
SELECT id, ntile(10) OVER (ORDER BY balance), percent_rank() OVER (ORDER BY age) FROM users WHERE status <> 'invited'

-- @group window_first_value_range
SELECT id, first_value(price) OVER (PARTITION BY category_id ORDER BY price RANGE BETWEEN 10.0 PRECEDING AND 10.0 FOLLOWING) FROM products
SELECT id, first_value(price) OVER (PARTITION BY category_id ORDER BY price RANGE BETWEEN 2.5 PRECEDING AND 1.5 FOLLOWING) FROM products

-- ======================================================= JSON operators

-- @group jsonb_get_text
SELECT id, settings->>'theme' FROM users WHERE settings->>'theme' = 'dark'
SELECT id, settings->>'locale' FROM users WHERE settings->>'beta' = 'true'

-- @group jsonb_get_object_then_text
SELECT metadata->'source', metadata->'utm'->>'campaign' FROM orders WHERE id = 5
SELECT metadata->'channel', metadata->'ref'->>'id' FROM orders WHERE id = 77

-- @group jsonb_array_index
SELECT payload->0, payload->-1 FROM events WHERE kind = 'view' LIMIT 5
SELECT payload->2, payload->-3 FROM events WHERE kind = 'login' LIMIT 50

-- @group jsonb_path_ops
SELECT payload #> '{path}', payload #>> '{ms}' FROM events WHERE id = 10
SELECT payload #> '{a,b}', payload #>> '{x,0}' FROM events WHERE id = 11

-- @group jsonb_contains
SELECT id FROM users WHERE settings @> '{"theme": "dark"}'
SELECT id FROM users WHERE settings @> '{"beta": true, "theme": "light"}'

-- @group jsonb_contained_by
SELECT id FROM products WHERE attributes <@ '{"color": "red", "weight": 1}'
SELECT id FROM products WHERE attributes <@ '{"color": "blue"}'

-- @group jsonb_key_exists
SELECT count(*) FROM users WHERE settings ? 'beta'
SELECT count(*) FROM users WHERE settings ? 'theme'

-- @group jsonb_any_all_keys
SELECT id FROM products WHERE attributes ?| array['color', 'size'] AND attributes ?& array['weight']
SELECT id FROM products WHERE attributes ?| array['material', 'finish'] AND attributes ?& array['color']

-- @group jsonb_set_update
UPDATE users SET settings = jsonb_set(settings, '{theme}', '"dark"') WHERE id = 3
UPDATE users SET settings = jsonb_set(settings, '{locale}', '"fr"') WHERE id = 4

-- @group jsonb_concat_and_delete
UPDATE orders SET metadata = (metadata || '{"gift": true}') - 'coupon' WHERE id = 8
UPDATE orders SET metadata = (metadata || '{"note": "x"}') - 'promo' WHERE id = 9

-- @group jsonb_build_object_select
SELECT jsonb_build_object('id', id, 'email', email, 'admin', is_admin) FROM users WHERE id = 2
SELECT jsonb_build_object('key', id, 'mail', email, 'root', is_admin) FROM users WHERE id = 20

-- @group jsonb_array_elements
SELECT e.id, j.value FROM events e, jsonb_each_text(e.payload) j WHERE e.kind = 'purchase' AND j.key = 'path'
SELECT e.id, j.value FROM events e, jsonb_each_text(e.payload) j WHERE e.kind = 'view' AND j.key = 'ms'

-- @group jsonb_path_query
SELECT jsonb_path_query_first(payload, '$.ms ? (@ > 100)') FROM events WHERE id < 20
SELECT jsonb_path_query_first(payload, '$.path') FROM events WHERE id < 5

-- @group jsonb_typed_compare
SELECT id FROM events WHERE (payload->>'ms')::int > 500 AND kind = 'view'
SELECT id FROM events WHERE (payload->>'ms')::int > 10 AND kind = 'purchase'

-- @group json_agg_nested
SELECT u.id, json_agg(json_build_object('id', o.id, 'total', o.total)) FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id = 6 GROUP BY u.id
SELECT u.id, json_agg(json_build_object('oid', o.id, 'sum', o.total)) FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id = 16 GROUP BY u.id

-- ============================================================== arrays

-- @group array_overlap
SELECT id FROM users WHERE tags && '{t1,t2}'
SELECT id FROM users WHERE tags && '{t4}'

-- @group array_contains_element
SELECT id FROM users WHERE 't1' = ANY(tags)
SELECT id FROM users WHERE 't3' = ANY(tags)

-- @group array_any_of_literal
SELECT id, email FROM users WHERE id = ANY('{1,2,3}'::bigint[])
SELECT id, email FROM users WHERE id = ANY('{10,20}'::bigint[])

-- @group array_append_update
UPDATE users SET tags = array_append(tags, 'vip') WHERE id = 5 AND NOT 'vip' = ANY(tags)
UPDATE users SET tags = array_append(tags, 'late') WHERE id = 6 AND NOT 'late' = ANY(tags)

-- @group array_subscript_slice
SELECT tags[1], tags[2:3], array_length(tags, 1) FROM users WHERE id = 1
SELECT tags[2], tags[1:1], array_length(tags, 1) FROM users WHERE id = 2

-- @group array_constructor_same_length
SELECT unnest(ARRAY[1, 2, 3]) + 1
SELECT unnest(ARRAY[7, 8, 9]) + 5

-- @group unnest_join
SELECT p.name FROM products p JOIN unnest('{1,2,3}'::int[]) WITH ORDINALITY AS x(id, ord) ON x.id = p.id ORDER BY x.ord
SELECT p.name FROM products p JOIN unnest('{9,4}'::int[]) WITH ORDINALITY AS x(id, ord) ON x.id = p.id ORDER BY x.ord

-- ======================================================= text search

-- @group fulltext_match
SELECT id, name FROM products WHERE search @@ to_tsquery('english', 'widget & gadget') LIMIT 10
SELECT id, name FROM products WHERE search @@ to_tsquery('english', 'number') LIMIT 2

-- @group fulltext_rank
SELECT id, ts_rank(search, plainto_tsquery('simple', 'product widget')) AS r FROM products ORDER BY r DESC LIMIT 5
SELECT id, ts_rank(search, plainto_tsquery('simple', 'gadget')) AS r FROM products ORDER BY r DESC LIMIT 3

-- @group like_prefix
SELECT id FROM users WHERE email LIKE 'user1%' ORDER BY id LIMIT 10
SELECT id FROM users WHERE email LIKE 'admin%' ORDER BY id LIMIT 100

-- @group ilike_contains
SELECT id, name FROM products WHERE name ILIKE '%duct 1%'
SELECT id, name FROM products WHERE name ILIKE '%WIDGET%'

-- @group like_escape
SELECT id FROM products WHERE sku LIKE 'SKU!_%' ESCAPE '!'
SELECT id FROM products WHERE sku LIKE 'X#%%' ESCAPE '#'

-- @group regex_match
SELECT id FROM users WHERE email ~* '^user[0-9]+@example\.com$'
SELECT id FROM users WHERE email ~* '^admin'

-- @group regex_not_match_and_similar
SELECT id FROM products WHERE sku !~ '^SKU-1' AND name SIMILAR TO 'Product (1|2)%'
SELECT id FROM products WHERE sku !~ '^SKU-9' AND name SIMILAR TO '%3'

-- @group string_functions
SELECT upper(name), substring(email from 1 for 5), position('@' in email), length(name) FROM users WHERE id = 3
SELECT upper(name), substring(email from 2 for 10), position('.' in email), length(name) FROM users WHERE id = 9

-- @group concat_operator
SELECT name || ' <' || email || '>' FROM users WHERE status = 'active' LIMIT 5
SELECT name || ' [' || email || ']' FROM users WHERE status = 'invited' LIMIT 9

-- @group trim_and_replace
SELECT trim(both 'x' from name), replace(email, '@', ' at '), split_part(email, '@', 2) FROM users WHERE id = 1
SELECT trim(both ' ' from name), replace(email, '.', ' dot '), split_part(email, '@', 1) FROM users WHERE id = 2

-- @group format_function
SELECT format('%s ordered %s items', u.name, count(*)) FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id = 8 GROUP BY u.name
SELECT format('%s has %s', u.name, count(*)) FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id = 18 GROUP BY u.name

-- ========================================================= date & time

-- @group date_trunc_month
SELECT date_trunc('month', created_at) AS month, sum(total) FROM orders WHERE created_at >= '2024-01-01' AND created_at < '2025-01-01' GROUP BY 1 ORDER BY 1
SELECT date_trunc('week', created_at) AS month, sum(total) FROM orders WHERE created_at >= '2023-01-01' AND created_at < '2023-07-01' GROUP BY 1 ORDER BY 1

-- @group extract_field
SELECT extract(year FROM created_at), extract(dow FROM created_at), count(*) FROM orders GROUP BY 1, 2
SELECT extract(month FROM created_at), extract(hour FROM created_at), count(*) FROM orders GROUP BY 1, 2
SELECT EXTRACT(quarter FROM created_at), EXTRACT(isodow FROM created_at), count(*) FROM orders GROUP BY 1, 2

-- @group interval_arithmetic
SELECT token FROM sessions WHERE expires_at < now() + interval '15 minutes'
SELECT token FROM sessions WHERE expires_at < now() + interval '1 day'
SELECT token FROM sessions WHERE expires_at < now() + INTERVAL '2 hours 30 minutes'

-- @group typed_date_literal
SELECT count(*) FROM orders WHERE created_at::date BETWEEN DATE '2024-01-01' AND DATE '2024-12-31'
SELECT count(*) FROM orders WHERE created_at::date BETWEEN DATE '2020-02-29' AND DATE '2021-03-01'

-- @group typed_timestamp_literal
SELECT count(*) FROM events WHERE occurred_at > TIMESTAMP WITH TIME ZONE '2024-05-01 10:00:00+00'
SELECT count(*) FROM events WHERE occurred_at > TIMESTAMP WITH TIME ZONE '1999-12-31 23:59:59-05'

-- @group at_time_zone
SELECT id, created_at AT TIME ZONE 'Europe/Paris' FROM orders WHERE id = 3
SELECT id, created_at AT TIME ZONE 'America/New_York' FROM orders WHERE id = 30

-- @group age_and_date_part
SELECT id, age(now(), created_at), date_part('epoch', now() - created_at) FROM users WHERE id = 4
SELECT id, age(now(), created_at), date_part('day', now() - created_at) FROM users WHERE id = 40

-- @group generate_series_days
SELECT d::date, count(e.id) FROM generate_series(now() - interval '7 days', now(), interval '1 day') d LEFT JOIN events e ON e.occurred_at::date = d::date GROUP BY 1 ORDER BY 1
SELECT d::date, count(e.id) FROM generate_series(now() - interval '3 days', now(), interval '12 hours') d LEFT JOIN events e ON e.occurred_at::date = d::date GROUP BY 1 ORDER BY 1

-- @group make_interval_and_to_char
SELECT to_char(created_at, 'YYYY-MM-DD HH24:MI'), created_at + make_interval(days => 3) FROM orders WHERE id = 2
SELECT to_char(created_at, 'Mon DD'), created_at + make_interval(days => 30) FROM orders WHERE id = 12

-- ============================================================= inserts

-- @group insert_user_returning
INSERT INTO users (org_id, email, name, age) VALUES (1, 'new1@example.com', 'New One', 31) RETURNING id, created_at
INSERT INTO users (org_id, email, name, age) VALUES (2, 'new2@example.com', 'New Two', 45) RETURNING id, created_at
insert into users (org_id, email, name, age) values (3, 'new3@example.com', 'O''Brien', 27) returning id, created_at

-- @group insert_event_jsonb
INSERT INTO events (kind, user_id, payload) VALUES ('login', 3, '{"ip": "10.0.0.1", "ua": "curl"}')
INSERT INTO events (kind, user_id, payload) VALUES ('logout', 4, '{"ip": "10.0.0.2"}')

-- @group insert_default_values
INSERT INTO audit_log (table_name, action) VALUES ('users', 'noop') RETURNING id
INSERT INTO audit_log (table_name, action) VALUES ('orders', 'touch') RETURNING id

-- @group insert_on_conflict_do_nothing
INSERT INTO sessions (token, user_id, expires_at) VALUES ('tok-a', 1, now() + interval '1 hour') ON CONFLICT (token) DO NOTHING
INSERT INTO sessions (token, user_id, expires_at) VALUES ('tok-b', 2, now() + interval '2 hours') ON CONFLICT (token) DO NOTHING

-- @group insert_on_conflict_do_update
INSERT INTO counters (name, value) VALUES ('hits', 1) ON CONFLICT (name) DO UPDATE SET value = counters.value + EXCLUDED.value, updated_at = now()
INSERT INTO counters (name, value) VALUES ('visits', 10) ON CONFLICT (name) DO UPDATE SET value = counters.value + EXCLUDED.value, updated_at = now()

-- @group insert_on_conflict_on_constraint_where
INSERT INTO daily_stats (day, metric, value) VALUES ('2024-03-01', 'signups', 5.0) ON CONFLICT ON CONSTRAINT daily_stats_pkey DO UPDATE SET value = daily_stats.value + EXCLUDED.value WHERE daily_stats.value < 1000
INSERT INTO daily_stats (day, metric, value) VALUES ('2024-03-02', 'orders', 7.5) ON CONFLICT ON CONSTRAINT daily_stats_pkey DO UPDATE SET value = daily_stats.value + EXCLUDED.value WHERE daily_stats.value < 50

-- @group insert_select
INSERT INTO audit_log (table_name, action, row_data) SELECT 'orders', 'snapshot', to_jsonb(o) FROM orders o WHERE o.id = 1
INSERT INTO audit_log (table_name, action, row_data) SELECT 'orders', 'backup', to_jsonb(o) FROM orders o WHERE o.id = 2

-- @group insert_order_item_subselect
INSERT INTO order_items (order_id, product_id, quantity, unit_price) SELECT 5, id, 2, price FROM products WHERE sku = 'SKU-3'
INSERT INTO order_items (order_id, product_id, quantity, unit_price) SELECT 6, id, 1, price FROM products WHERE sku = 'SKU-4'

-- @group insert_bulk_same_rows
INSERT INTO events (kind, user_id) VALUES ('view', 1), ('view', 2), ('view', 3)
INSERT INTO events (kind, user_id) VALUES ('click', 4), ('click', 5), ('click', 6)

-- @group insert_with_now_and_null
INSERT INTO job_queue (queue, payload, run_at, locked_at) VALUES ('mailers', '{"to": "a@b.c"}', now(), NULL)
INSERT INTO job_queue (queue, payload, run_at, locked_at) VALUES ('default', '{"job": "x"}', now(), NULL)

-- @group insert_nextval
INSERT INTO audit_log (table_name, action, row_data) VALUES ('invoice', 'issue', jsonb_build_object('number', nextval('invoice_number_seq'), 'amount', 10.5))
INSERT INTO audit_log (table_name, action, row_data) VALUES ('invoice', 'issue', jsonb_build_object('number', nextval('invoice_number_seq'), 'amount', 99.99))

-- @group insert_bytea_hex
INSERT INTO sessions (token, data, expires_at) VALUES ('bin-1', '\xdeadbeef', '2030-01-01')
INSERT INTO sessions (token, data, expires_at) VALUES ('bin-2', '\x00ff', '2031-01-01')

-- @group insert_escape_string
INSERT INTO scratch (id, note) VALUES (101, E'line1\nline2\t\'quoted\'')
INSERT INTO scratch (id, note) VALUES (102, E'back\\slash')

-- ============================================================= updates

-- @group update_status_by_id
UPDATE orders SET status = 'shipped', shipped_at = now() WHERE id = 10 AND status = 'paid'
UPDATE orders SET status = 'cancelled', shipped_at = now() WHERE id = 11 AND status = 'pending'

-- @group rails_update_timestamps
UPDATE "users" SET "name" = 'Renamed', "updated_at" = '2024-06-01 12:00:00.123456' WHERE "users"."id" = 2
UPDATE "users" SET "name" = 'Other', "updated_at" = '2024-06-02 08:30:00' WHERE "users"."id" = 3

-- @group update_increment
UPDATE products SET stock = stock - 1 WHERE id = 4 AND stock > 0 RETURNING stock
UPDATE products SET stock = stock - 3 WHERE id = 5 AND stock > 2 RETURNING stock

-- @group update_from_join
UPDATE orders o SET total = s.sum FROM (SELECT order_id, sum(quantity * unit_price) AS sum FROM order_items GROUP BY order_id) s WHERE s.order_id = o.id AND o.id = 20
UPDATE orders o SET total = s.sum FROM (SELECT order_id, sum(quantity * unit_price) AS sum FROM order_items GROUP BY order_id) s WHERE s.order_id = o.id AND o.id = 21

-- @group update_case_expression
UPDATE users SET status = CASE WHEN age < 25 THEN 'junior' WHEN age > 60 THEN 'senior' ELSE 'regular' END WHERE org_id = 5
UPDATE users SET status = CASE WHEN age < 18 THEN 'minor' WHEN age > 65 THEN 'retired' ELSE 'adult' END WHERE org_id = 4

-- @group update_soft_delete
UPDATE users SET deleted_at = now() WHERE id = 49 AND deleted_at IS NULL
UPDATE users SET deleted_at = now() WHERE id = 48 AND deleted_at IS NULL

-- @group update_numeric_math
UPDATE users SET balance = round(balance * 1.05, 2) WHERE balance > 100.00
UPDATE users SET balance = round(balance * 0.98, 2) WHERE balance > 250.50

-- @group update_subquery_in_set
UPDATE products SET price = (SELECT avg(unit_price) FROM order_items WHERE product_id = 3) WHERE id = 3
UPDATE products SET price = (SELECT avg(unit_price) FROM order_items WHERE product_id = 7) WHERE id = 7

-- @group update_negative_numbers
UPDATE users SET age = age + -1 WHERE id = 10 AND balance > -5.0
UPDATE users SET age = age + -2 WHERE id = 11 AND balance > -100.5
UPDATE users SET age = age + 3 WHERE id = 12 AND balance > 0.25

-- @group update_boolean_flags
UPDATE products SET active = false WHERE stock = 0 AND active = true
UPDATE products SET active = TRUE WHERE stock = 10 AND active = FALSE

-- ============================================================= deletes

-- @group delete_by_id
DELETE FROM sessions WHERE token = 'tok-a'
DELETE FROM sessions WHERE token = 'does-not-exist'

-- @group delete_expired_batch
DELETE FROM sessions WHERE token IN (SELECT token FROM sessions WHERE expires_at < now() LIMIT 100)
DELETE FROM sessions WHERE token IN (SELECT token FROM sessions WHERE expires_at < now() LIMIT 1000)

-- @group delete_using
DELETE FROM order_items oi USING orders o WHERE oi.order_id = o.id AND o.status = 'cancelled' AND o.id = 4
DELETE FROM order_items oi USING orders o WHERE oi.order_id = o.id AND o.status = 'refunded' AND o.id = 8

-- @group delete_returning
DELETE FROM events WHERE occurred_at < '2000-01-01' RETURNING id, kind
DELETE FROM events WHERE occurred_at < '1990-06-01' RETURNING id, kind

-- @group delete_not_exists
DELETE FROM audit_log a WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = (a.row_data->>'user_id')::bigint) AND a.table_name = 'users_gone'
DELETE FROM audit_log a WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = (a.row_data->>'user_id')::bigint) AND a.table_name = 'nothing'

-- ================================================================ MERGE

-- @group merge_counters
MERGE INTO counters c USING (SELECT 'signups' AS name, 3 AS delta) s ON c.name = s.name WHEN MATCHED THEN UPDATE SET value = c.value + s.delta WHEN NOT MATCHED THEN INSERT (name, value) VALUES (s.name, s.delta)
MERGE INTO counters c USING (SELECT 'refunds' AS name, 1 AS delta) s ON c.name = s.name WHEN MATCHED THEN UPDATE SET value = c.value + s.delta WHEN NOT MATCHED THEN INSERT (name, value) VALUES (s.name, s.delta)

-- @group merge_delete_matched
MERGE INTO daily_stats d USING (VALUES (DATE '2024-03-01', 'signups')) AS s(day, metric) ON d.day = s.day AND d.metric = s.metric WHEN MATCHED AND d.value > 100 THEN DELETE WHEN MATCHED THEN DO NOTHING
MERGE INTO daily_stats d USING (VALUES (DATE '2024-03-02', 'orders')) AS s(day, metric) ON d.day = s.day AND d.metric = s.metric WHEN MATCHED AND d.value > 5 THEN DELETE WHEN MATCHED THEN DO NOTHING

-- ========================================================== job queue

-- @group job_queue_skip_locked
SELECT id, payload FROM job_queue WHERE queue = 'default' AND run_at <= now() AND locked_at IS NULL ORDER BY priority DESC, run_at LIMIT 1 FOR UPDATE SKIP LOCKED
SELECT id, payload FROM job_queue WHERE queue = 'mailers' AND run_at <= now() AND locked_at IS NULL ORDER BY priority DESC, run_at LIMIT 10 FOR UPDATE SKIP LOCKED

-- @group job_queue_lock_update
UPDATE job_queue SET locked_at = now(), locked_by = 'worker-1', attempts = attempts + 1 WHERE id = (SELECT id FROM job_queue WHERE queue = 'default' AND locked_at IS NULL ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING *
UPDATE job_queue SET locked_at = now(), locked_by = 'worker-7', attempts = attempts + 1 WHERE id = (SELECT id FROM job_queue WHERE queue = 'mailers' AND locked_at IS NULL ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING *

-- @group job_queue_fail
UPDATE job_queue SET locked_at = NULL, last_error = 'timeout after 30s', run_at = now() + interval '5 minutes' WHERE id = 3
UPDATE job_queue SET locked_at = NULL, last_error = 'connection refused', run_at = now() + interval '1 minute' WHERE id = 4

-- @group select_for_share_nowait
SELECT value FROM counters WHERE name = 'hits' FOR SHARE NOWAIT
SELECT value FROM counters WHERE name = 'orders' FOR SHARE NOWAIT

-- @group select_for_update_of
SELECT o.id FROM orders o JOIN users u ON u.id = o.user_id WHERE o.id = 30 FOR UPDATE OF o
SELECT o.id FROM orders o JOIN users u ON u.id = o.user_id WHERE o.id = 31 FOR UPDATE OF o

-- ============================================================= pgbench

-- @group pgbench_update_accounts
UPDATE pgbench_accounts SET abalance = abalance + 1234 WHERE aid = 5678;
UPDATE pgbench_accounts SET abalance = abalance + -4321 WHERE aid = 10;
UPDATE pgbench_accounts SET abalance = abalance + 0 WHERE aid = 9999;

-- @group pgbench_select_abalance
SELECT abalance FROM pgbench_accounts WHERE aid = 5678;
SELECT abalance FROM pgbench_accounts WHERE aid = 1;

-- @group pgbench_update_tellers
UPDATE pgbench_tellers SET tbalance = tbalance + 1234 WHERE tid = 3;
UPDATE pgbench_tellers SET tbalance = tbalance + -77 WHERE tid = 17;

-- @group pgbench_update_branches
UPDATE pgbench_branches SET bbalance = bbalance + 1234 WHERE bid = 1;
UPDATE pgbench_branches SET bbalance = bbalance + -5000 WHERE bid = 2;

-- @group pgbench_insert_history
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (3, 1, 5678, 1234, CURRENT_TIMESTAMP);
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (17, 2, 10, -4321, CURRENT_TIMESTAMP);

-- @group pgbench_tpcb_transaction
BEGIN; UPDATE pgbench_accounts SET abalance = abalance + 100 WHERE aid = 1; SELECT abalance FROM pgbench_accounts WHERE aid = 1; UPDATE pgbench_tellers SET tbalance = tbalance + 100 WHERE tid = 1; UPDATE pgbench_branches SET bbalance = bbalance + 100 WHERE bid = 1; INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 100, CURRENT_TIMESTAMP); END;
BEGIN; UPDATE pgbench_accounts SET abalance = abalance + -7 WHERE aid = 2; SELECT abalance FROM pgbench_accounts WHERE aid = 2; UPDATE pgbench_tellers SET tbalance = tbalance + -7 WHERE tid = 2; UPDATE pgbench_branches SET bbalance = bbalance + -7 WHERE bid = 2; INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (2, 2, 2, -7, CURRENT_TIMESTAMP); END;

-- @group pgbench_count_accounts
select count(*) from pgbench_accounts where bid = 1
select count(*) from pgbench_accounts where bid = 2

-- ==================================================== subqueries & sets

-- @group exists_subquery
SELECT u.id FROM users u WHERE EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id AND o.total > 50) AND u.org_id = 2
SELECT u.id FROM users u WHERE EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id AND o.total > 500) AND u.org_id = 3

-- @group not_exists_reviews
SELECT p.id FROM products p WHERE NOT EXISTS (SELECT 1 FROM reviews r WHERE r.product_id = p.id AND r.rating < 2)
SELECT p.id FROM products p WHERE NOT EXISTS (SELECT 1 FROM reviews r WHERE r.product_id = p.id AND r.rating < 4)

-- @group in_subquery
SELECT name FROM products WHERE id IN (SELECT product_id FROM order_items WHERE quantity > 2) AND price < 30.00
SELECT name FROM products WHERE id IN (SELECT product_id FROM order_items WHERE quantity > 3) AND price < 15.75

-- @group scalar_subquery_select
SELECT u.email, (SELECT count(*) FROM orders o WHERE o.user_id = u.id AND o.status = 'paid') FROM users u WHERE u.id < 10
SELECT u.email, (SELECT count(*) FROM orders o WHERE o.user_id = u.id AND o.status = 'pending') FROM users u WHERE u.id < 3

-- @group any_subquery_comparison
SELECT id FROM products WHERE price > ALL (SELECT unit_price FROM order_items WHERE order_id = 1)
SELECT id FROM products WHERE price > ALL (SELECT unit_price FROM order_items WHERE order_id = 2)

-- @group union_all
SELECT id, 'user' AS kind FROM users WHERE created_at > now() - interval '1 day' UNION ALL SELECT id, 'order' FROM orders WHERE created_at > now() - interval '1 day'
SELECT id, 'member' AS kind FROM users WHERE created_at > now() - interval '7 days' UNION ALL SELECT id, 'sale' FROM orders WHERE created_at > now() - interval '3 days'

-- @group union_distinct_order
SELECT email FROM users WHERE org_id = 1 UNION SELECT email FROM users WHERE age > 60 ORDER BY 1 LIMIT 10
SELECT email FROM users WHERE org_id = 2 UNION SELECT email FROM users WHERE age > 40 ORDER BY 1 LIMIT 20

-- @group intersect_except
SELECT user_id FROM orders WHERE status = 'paid' INTERSECT SELECT user_id FROM reviews WHERE rating = 5 EXCEPT SELECT id FROM users WHERE is_admin
SELECT user_id FROM orders WHERE status = 'shipped' INTERSECT SELECT user_id FROM reviews WHERE rating = 1 EXCEPT SELECT id FROM users WHERE is_admin

-- @group derived_table
SELECT avg(cnt) FROM (SELECT user_id, count(*) AS cnt FROM orders WHERE total > 10 GROUP BY user_id) t
SELECT avg(cnt) FROM (SELECT user_id, count(*) AS cnt FROM orders WHERE total > 75 GROUP BY user_id) t

-- @group distinct_on
SELECT DISTINCT ON (user_id) user_id, id, created_at FROM orders WHERE total > 20 ORDER BY user_id, created_at DESC
SELECT DISTINCT ON (user_id) user_id, id, created_at FROM orders WHERE total > 90 ORDER BY user_id, created_at DESC

-- @group case_when_select
SELECT id, CASE WHEN total >= 100 THEN 'large' WHEN total >= 10 THEN 'medium' ELSE 'small' END FROM orders WHERE user_id = 2
SELECT id, CASE WHEN total >= 500 THEN 'xl' WHEN total >= 50 THEN 'l' ELSE 's' END FROM orders WHERE user_id = 22

-- @group coalesce_nullif
SELECT coalesce(name, email, 'anonymous'), nullif(age, 0) FROM users WHERE id = 1
SELECT coalesce(name, email, 'unknown'), nullif(age, -1) FROM users WHERE id = 2

-- @group greatest_least
SELECT greatest(price, 10.0), least(stock, 100) FROM products WHERE id = 1
SELECT greatest(price, 5.5), least(stock, 1) FROM products WHERE id = 2

-- @group is_distinct_from
SELECT id FROM users WHERE name IS DISTINCT FROM 'User 1' AND org_id IS NOT DISTINCT FROM 2
SELECT id FROM users WHERE name IS DISTINCT FROM 'Nobody' AND org_id IS NOT DISTINCT FROM 4

-- @group between_symmetric
SELECT id FROM products WHERE price BETWEEN SYMMETRIC 50 AND 10
SELECT id FROM products WHERE price BETWEEN SYMMETRIC 100 AND 1

-- @group is_true_tests
SELECT id FROM users WHERE is_admin IS TRUE AND (age > 40) IS NOT FALSE AND org_id = 1
SELECT id FROM users WHERE is_admin IS TRUE AND (age > 20) IS NOT FALSE AND org_id = 2

-- @group is_false_tests
SELECT id FROM users WHERE is_admin IS FALSE AND org_id = 3
SELECT id FROM users WHERE is_admin IS FALSE AND org_id = 5

-- @group is_true_only
SELECT id FROM users WHERE is_admin IS TRUE AND org_id = 3
SELECT id FROM users WHERE is_admin IS TRUE AND org_id = 5

-- @group not_equal_spellings
SELECT id FROM orders WHERE status != 'cancelled' AND user_id = 3
SELECT id FROM orders WHERE status <> 'refunded' AND user_id = 4

-- @group order_by_position_one
SELECT name, price FROM products WHERE stock > 0 ORDER BY 1 LIMIT 5
SELECT name, price FROM products WHERE stock > 9 ORDER BY 1 LIMIT 7

-- @group order_by_position_two
SELECT name, price FROM products WHERE stock > 0 ORDER BY 2 LIMIT 5
SELECT name, price FROM products WHERE stock > 9 ORDER BY 2 LIMIT 7

-- @group tablesample
SELECT count(*) FROM events TABLESAMPLE BERNOULLI (10) REPEATABLE (42)
SELECT count(*) FROM events TABLESAMPLE BERNOULLI (50) REPEATABLE (7)

-- @group fetch_first_offset
SELECT id FROM orders ORDER BY id OFFSET 10 ROWS FETCH FIRST 5 ROWS ONLY
SELECT id FROM orders ORDER BY id OFFSET 40 ROWS FETCH FIRST 20 ROWS ONLY

-- @group keyset_pagination
SELECT id, created_at FROM orders WHERE (created_at, id) < ('2030-01-01', 500) ORDER BY created_at DESC, id DESC LIMIT 20
SELECT id, created_at FROM orders WHERE (created_at, id) < ('2024-07-01 10:00', 77) ORDER BY created_at DESC, id DESC LIMIT 50

-- @group order_by_nulls_last
SELECT id, shipped_at FROM orders WHERE user_id = 3 ORDER BY shipped_at DESC NULLS LAST, id LIMIT 10
SELECT id, shipped_at FROM orders WHERE user_id = 13 ORDER BY shipped_at DESC NULLS LAST, id LIMIT 5

-- @group values_select_standalone
VALUES (1, 'one'), (2, 'two')
VALUES (3, 'three'), (4, 'four')

-- @group values_join_same_rows
SELECT p.id, v.label FROM products p JOIN (VALUES (1, 'a'), (2, 'b')) AS v(id, label) ON v.id = p.id
SELECT p.id, v.label FROM products p JOIN (VALUES (5, 'x'), (6, 'y')) AS v(id, label) ON v.id = p.id

-- @group table_statement
TABLE organizations
table organizations

-- @group row_constructor_compare
SELECT id FROM users WHERE (org_id, status) = (1, 'active')
SELECT id FROM users WHERE (org_id, status) = (2, 'banned')

-- @group function_call_sql
SELECT user_order_count(5)
SELECT user_order_count(25)

-- @group set_returning_function_from
SELECT * FROM generate_series(1, 10) AS g WHERE g % 2 = 0
SELECT * FROM generate_series(5, 500) AS g WHERE g % 7 = 0

-- @group system_catalog_query
SELECT c.relname, c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY c.relname
SELECT c.relname, c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'pg_catalog' AND c.relkind = 'v' ORDER BY c.relname

-- @group current_settings
SELECT current_setting('server_version_num'), current_database(), current_user, version() LIKE 'PostgreSQL%'
SELECT current_setting('TimeZone'), current_database(), current_user, version() LIKE 'Postgres%'

-- @group pg_stat_activity_query
SELECT pid, state, wait_event_type FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'idle'
SELECT pid, state, wait_event_type FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active'

-- @group advisory_lock
SELECT pg_try_advisory_lock(12345), pg_advisory_unlock(12345)
SELECT pg_try_advisory_lock(777), pg_advisory_unlock(777)

-- ======================================================== literal forms

-- @group literal_escape_strings
SELECT E'tab\there', E'quote\'s', e'\\' FROM scratch WHERE id = 1
SELECT E'x', E'\x41\u00e9', e'nothing' FROM scratch WHERE id = 2

-- @group literal_unicode_escape
SELECT U&'d\0061t\+000061', 'plain' FROM scratch
SELECT U&'\00e9t\00e9', 'other' FROM scratch
SELECT U&'d!0061t' UESCAPE '!', 'third' FROM scratch

-- @group literal_bit_strings
SELECT B'1010' | B'0101', X'1F' & X'0F'
SELECT b'1111' | b'0000', x'FF' & x'F0'

-- @group literal_dollar_quoted
SELECT $$it's got 'quotes' and ; semicolons$$ AS note, length($q$ nested $$ dollar $$ $q$)
SELECT $$plain$$ AS note, length($tag$x$tag$)

-- @group literal_national
SELECT N'national', length(N'abc')
SELECT N'other', length(N'abcdef')

-- @group literal_string_continuation
SELECT 'first line' \
  'second line' AS joined, 'x'
SELECT 'abc' \
 -- comment between \
 'def' AS joined, 'y'
SELECT 'on one line' AS joined, 'z'

-- @group literal_numbers
SELECT 42, 3.14, .5, 5., 1e10, 2.5E-3, 1000000
SELECT 7, 2.71, .25, 9., 4e2, 1.5E+6, 3000000

-- @group literal_negative_numbers
SELECT -1, -2.5, 3 - 1, - 4
SELECT -100, -0.001, 9 - 8, - 7

-- @group literal_booleans
SELECT true, FALSE, NOT true
SELECT false, TRUE, NOT false

-- @group literal_casts
SELECT '1'::int, '2024-01-01'::date, '{1,2}'::int[], 'abc'::text, CAST('5' AS bigint)
SELECT '9'::int, '1970-01-01'::date, '{3}'::int[], 'xyz'::text, CAST('77' AS bigint)

-- @group literal_typmod_casts
SELECT name::varchar(10), price::numeric(10,2), created_at::timestamp(0) FROM products p JOIN orders o ON o.id = p.id WHERE p.id = 1
SELECT name::varchar(10), price::numeric(10,2), created_at::timestamp(0) FROM products p JOIN orders o ON o.id = p.id WHERE p.id = 2

-- @group literal_typmod_values
SELECT name::varchar(10), balance::numeric(10,2) FROM users WHERE id = 1
SELECT name::varchar(20), balance::numeric(12,4) FROM users WHERE id = 2
SELECT name::varchar(255), balance::numeric(8) FROM users WHERE id = 3

-- @group literal_interval_units
SELECT interval '1' day, interval '2 hours', '3 minutes'::interval
SELECT interval '10' day, interval '1 hour', '30 minutes'::interval

-- @group literal_quoted_identifiers
SELECT "email" AS "E-Mail", "name" AS "Full ""Name""" FROM "users" WHERE "id" = 1
SELECT "email" AS "E-Mail", "name" AS "Full ""Name""" FROM "users" WHERE "id" = 2

-- @group literal_unicode_identifier
SELECT U&"\0069d" FROM users WHERE id = 1
SELECT U&"\0069d" FROM users WHERE id = 5

-- @group operators_math_and_bits
SELECT 10 % 3, 2 ^ 10, |/ 16, @ -5, 7 & 3, 5 | 2, 1 << 4, 256 >> 2, ~ 1
SELECT 11 % 4, 3 ^ 3, |/ 81, @ -9, 6 & 2, 4 | 1, 2 << 3, 128 >> 1, ~ 7

-- @group operators_geometric_free_comparisons
SELECT id FROM users WHERE age >= 18 AND age <= 65 AND age != 30 AND age <> 31
SELECT id FROM users WHERE age >= 21 AND age <= 99 AND age != 40 AND age <> 41

-- @group comments_everywhere
SELECT /* cols */ id, email -- trailing \
FROM users /* nested /* comment */ here */ WHERE id = 1
SELECT id, email FROM users WHERE id = 2
/* leading */ select id, email from users where id = 3 -- end

-- @group sqlcommenter_tagged
SELECT id FROM orders WHERE user_id = 5 /*controller='orders',action='index',framework='rails%3A7.1'*/
SELECT id FROM orders WHERE user_id = 6 /*controller='orders',action='index',traceparent='00-5bd66ef5095369c7b0d1f8f4bd33716a-c532cb4098ac3dd2-01'*/
SELECT id FROM orders WHERE user_id = 7

-- ======================================================= multi-statement

-- @group multi_select_pair
SELECT count(*) FROM users WHERE org_id = 1; SELECT count(*) FROM orders WHERE status = 'paid'
SELECT count(*) FROM users WHERE org_id = 2; SELECT count(*) FROM orders WHERE status = 'shipped'

-- @group multi_with_strings_holding_semicolons
SELECT 'a;b' AS x; SELECT length($$c;d$$); SELECT 1 /* ; */
SELECT 'e;f' AS x; SELECT length($$g;h$$); SELECT 2 /* ; */

-- @group multi_set_and_select
SET LOCAL statement_timeout = 0; SELECT id FROM users WHERE email = 'user5@example.com'
SET LOCAL statement_timeout = 0; SELECT id FROM users WHERE email = 'user6@example.com'

-- @group multi_transaction_update
BEGIN; UPDATE counters SET value = value + 1 WHERE name = 'hits'; INSERT INTO audit_log (table_name, action) VALUES ('counters', 'bump'); COMMIT
BEGIN; UPDATE counters SET value = value + 9 WHERE name = 'orders'; INSERT INTO audit_log (table_name, action) VALUES ('counters', 'add'); COMMIT

-- @group multi_same_statement_twice
SELECT price FROM products WHERE id = 1; SELECT price FROM products WHERE id = 2
SELECT price FROM products WHERE id = 3; SELECT price FROM products WHERE id = 4

-- @group multi_trailing_semicolons_and_empty
;SELECT stock FROM products WHERE sku = 'SKU-1';;
;SELECT stock FROM products WHERE sku = 'SKU-2';;

-- @group multi_begin_atomic_function
-- @differs utility-raw-text
CREATE OR REPLACE FUNCTION scratch_total(i int) RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN i > 0 THEN 1 ELSE 0 END; SELECT count(*) + i FROM scratch; END; SELECT scratch_total(5)
CREATE OR REPLACE FUNCTION scratch_total(i int) RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN i > 0 THEN 2 ELSE 1 END; SELECT count(*) + i FROM scratch; END; SELECT scratch_total(6)

-- ============================================================ transactions

-- @group tx_begin
-- @differs utility-raw-text
-- @after ROLLBACK
BEGIN
begin

-- @group tx_begin_isolation
-- @differs utility-raw-text
-- @after ROLLBACK
BEGIN ISOLATION LEVEL REPEATABLE READ
BEGIN ISOLATION LEVEL REPEATABLE READ /* retry 2 */

-- @group tx_start_transaction_read_only
-- @differs utility-raw-text
-- @after ROLLBACK
START TRANSACTION READ ONLY
start transaction read only

-- @group tx_commit
-- @differs utility-raw-text
-- @before BEGIN
COMMIT
commit

-- @group tx_end_is_commit
-- @differs utility-raw-text
-- @before BEGIN
COMMIT
END
commit work

-- @group tx_rollback_spellings
-- @differs utility-raw-text
-- @before BEGIN; SAVEPOINT sp_a
ROLLBACK TO SAVEPOINT sp_a; ROLLBACK
ROLLBACK TRANSACTION TO sp_a; ABORT

-- @group tx_rollback
-- @differs utility-raw-text
-- @before BEGIN
ROLLBACK
ROLLBACK /* aborted by app */

-- @group tx_savepoint
-- @differs utility-raw-text
-- @before BEGIN
-- @after ROLLBACK
SAVEPOINT active_record_1
SAVEPOINT active_record_2

-- @group tx_release_savepoint
-- @differs utility-raw-text
-- @before BEGIN; SAVEPOINT s1; SAVEPOINT s2
-- @after ROLLBACK
RELEASE SAVEPOINT s1
RELEASE SAVEPOINT s2

-- @group tx_rollback_to_savepoint
-- @differs utility-raw-text
-- @before BEGIN; SAVEPOINT sp_a; SAVEPOINT sp_b
-- @after ROLLBACK
ROLLBACK TO SAVEPOINT sp_a
ROLLBACK TO SAVEPOINT sp_b

-- @group tx_set_transaction
-- @differs utility-raw-text
BEGIN; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; SELECT count(*) FROM counters; COMMIT
BEGIN; set transaction isolation level serializable; SELECT count(*) FROM counters; COMMIT

-- ================================================================== DDL

-- @group ddl_create_table
-- @differs utility-raw-text
-- @after DROP TABLE IF EXISTS scratch_new
CREATE TABLE scratch_new (id bigint PRIMARY KEY, name varchar(100) NOT NULL DEFAULT 'x', amount numeric(10,2) DEFAULT 0)
CREATE TABLE scratch_new (id bigint PRIMARY KEY, name varchar(255) NOT NULL DEFAULT 'y', amount numeric(12,4) DEFAULT 1.5)

-- @group ddl_create_temp_table_as
-- @differs utility-raw-text
-- @after DROP TABLE IF EXISTS tmp_report
CREATE TEMP TABLE tmp_report AS SELECT user_id, sum(total) AS total FROM orders WHERE status = 'paid' GROUP BY user_id
CREATE TEMP TABLE tmp_report AS SELECT user_id, sum(total) AS total FROM orders WHERE status = 'shipped' GROUP BY user_id

-- @group ddl_create_index
-- @differs utility-raw-text
-- @after DROP INDEX IF EXISTS scratch_note_idx
CREATE INDEX scratch_note_idx ON scratch (note) WHERE id > 100
CREATE INDEX scratch_note_idx ON scratch (note) WHERE id > 5000

-- @group ddl_create_unique_index_concurrently
-- @differs utility-raw-text
-- @after DROP INDEX IF EXISTS scratch_lower_note_idx
CREATE UNIQUE INDEX CONCURRENTLY scratch_lower_note_idx ON scratch (lower(note), id)
create unique index concurrently scratch_lower_note_idx on scratch (lower(note), id)

-- @group ddl_alter_table_add_column
-- @differs utility-raw-text
-- @after ALTER TABLE scratch DROP COLUMN IF EXISTS extra
ALTER TABLE scratch ADD COLUMN extra integer NOT NULL DEFAULT 5
ALTER TABLE scratch ADD COLUMN extra integer NOT NULL DEFAULT 10

-- @group ddl_alter_table_set_default
-- @differs utility-raw-text
-- @after ALTER TABLE scratch ALTER COLUMN note DROP DEFAULT
ALTER TABLE scratch ALTER COLUMN note SET DEFAULT 'none'
ALTER TABLE scratch ALTER COLUMN note SET DEFAULT 'empty'

-- @group ddl_alter_table_add_check
-- @differs utility-raw-text
-- @after ALTER TABLE scratch DROP CONSTRAINT IF EXISTS scratch_id_check
ALTER TABLE scratch ADD CONSTRAINT scratch_id_check CHECK (id > -1)
ALTER TABLE scratch ADD CONSTRAINT scratch_id_check CHECK (id > -1000)

-- @group ddl_create_view
-- @differs utility-raw-text
-- @after DROP VIEW IF EXISTS big_orders
CREATE VIEW big_orders AS SELECT id, user_id, total FROM orders WHERE total > 100
CREATE VIEW big_orders AS SELECT id, user_id, total FROM orders WHERE total > 250

-- @group ddl_create_materialized_view
-- @differs utility-raw-text
-- @after DROP MATERIALIZED VIEW IF EXISTS org_sizes
CREATE MATERIALIZED VIEW org_sizes AS SELECT org_id, count(*) FROM users WHERE status = 'active' GROUP BY org_id
CREATE MATERIALIZED VIEW org_sizes AS SELECT org_id, count(*) FROM users WHERE status = 'invited' GROUP BY org_id

-- @group ddl_create_function_plpgsql
-- @differs utility-raw-text
CREATE OR REPLACE FUNCTION scratch_touch(p_id int) RETURNS void LANGUAGE plpgsql COST 100 AS $fn$ BEGIN UPDATE scratch SET note = 'touched' WHERE id = p_id; END $fn$
CREATE OR REPLACE FUNCTION scratch_touch(p_id int) RETURNS void LANGUAGE plpgsql COST 200 AS $fn$ BEGIN UPDATE scratch SET note = 'touched' WHERE id = p_id; END $fn$

-- @group ddl_create_trigger_function
-- @differs utility-raw-text
CREATE OR REPLACE FUNCTION scratch_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit_log (table_name, action) VALUES (TG_TABLE_NAME, TG_OP); RETURN NEW; END $$
create or replace function scratch_audit() returns trigger language plpgsql as $$ BEGIN INSERT INTO audit_log (table_name, action) VALUES (TG_TABLE_NAME, TG_OP); RETURN NEW; END $$

-- @group ddl_create_trigger
-- @differs utility-raw-text
-- @after DROP TRIGGER IF EXISTS scratch_audit_trg ON scratch
CREATE TRIGGER scratch_audit_trg AFTER INSERT OR UPDATE ON scratch FOR EACH ROW WHEN (NEW.id > 10) EXECUTE FUNCTION scratch_audit()
CREATE TRIGGER scratch_audit_trg AFTER INSERT OR UPDATE ON scratch FOR EACH ROW WHEN (NEW.id > 99) EXECUTE FUNCTION scratch_audit()

-- @group ddl_create_sequence
-- @differs utility-raw-text
-- @after DROP SEQUENCE IF EXISTS scratch_seq
CREATE SEQUENCE scratch_seq START WITH 100 INCREMENT BY 5 MINVALUE -10
CREATE SEQUENCE scratch_seq START WITH -1 INCREMENT BY -1 MINVALUE -1000

-- @group ddl_create_type_enum
-- @differs utility-raw-text
-- @after DROP TYPE IF EXISTS scratch_mood
CREATE TYPE scratch_mood AS ENUM ('sad', 'ok', 'happy')
CREATE TYPE scratch_mood AS ENUM ('low', 'mid', 'high')

-- @group ddl_create_domain
-- @differs utility-raw-text
-- @after DROP DOMAIN IF EXISTS scratch_positive
CREATE DOMAIN scratch_positive AS integer CHECK (VALUE > 0)
CREATE DOMAIN scratch_positive AS integer CHECK (VALUE > 10)

-- @group ddl_create_schema
-- @differs utility-raw-text
-- @after DROP SCHEMA IF EXISTS reporting CASCADE
CREATE SCHEMA IF NOT EXISTS reporting
create schema if not exists reporting

-- @group ddl_comment_on
-- @differs utility-raw-text
COMMENT ON TABLE scratch IS 'scratch space for tests'
COMMENT ON TABLE scratch IS 'temporary data'

-- @group ddl_grant
-- @differs utility-raw-text
GRANT SELECT, INSERT ON scratch TO PUBLIC
grant select, insert on scratch to public

-- @group ddl_revoke
-- @differs utility-raw-text
REVOKE INSERT ON scratch FROM PUBLIC
revoke insert on scratch from public

-- @group ddl_truncate
-- @differs utility-raw-text
TRUNCATE scratch
truncate scratch

-- @group ddl_drop_table_if_exists
-- @differs utility-raw-text
DROP TABLE IF EXISTS no_such_table_1
drop table if exists no_such_table_1

-- @group ddl_create_policy
-- @differs utility-raw-text
-- @after DROP POLICY IF EXISTS scratch_policy ON scratch
CREATE POLICY scratch_policy ON scratch USING (id > 0)
CREATE POLICY scratch_policy ON scratch USING (id > 100)

-- @group ddl_create_extension
-- @differs utility-raw-text
CREATE EXTENSION IF NOT EXISTS pg_stat_statements
create extension if not exists pg_stat_statements

-- @group ddl_alter_sequence_restart
-- @differs utility-raw-text
ALTER SEQUENCE invoice_number_seq RESTART WITH 5000
ALTER SEQUENCE invoice_number_seq RESTART WITH 1000

-- @group ddl_create_table_partitioned
-- @differs utility-raw-text
-- @after DROP TABLE IF EXISTS metrics_part
CREATE TABLE metrics_part (at date NOT NULL, v int) PARTITION BY RANGE (at); CREATE TABLE metrics_part_2024 PARTITION OF metrics_part FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')
CREATE TABLE metrics_part (at date NOT NULL, v int) PARTITION BY RANGE (at); CREATE TABLE metrics_part_2024 PARTITION OF metrics_part FOR VALUES FROM ('2023-01-01') TO ('2026-01-01')

-- ============================================================== utility

-- @group util_set_timeout
-- @differs utility-raw-text
-- @after RESET statement_timeout
SET statement_timeout = 5000
SET statement_timeout = '30s'

-- @group util_set_search_path
-- @differs utility-raw-text
-- @after RESET search_path
SET search_path TO public, pg_catalog
set search_path to public, pg_catalog

-- @group util_set_config_select
SELECT set_config('application_name', 'billing-worker', false)
SELECT set_config('application_name', 'web', false)

-- @group util_show
-- @differs utility-raw-text
SHOW work_mem
show work_mem

-- @group util_reset
-- @differs utility-raw-text
RESET work_mem
reset work_mem

-- @group util_vacuum
-- @differs utility-raw-text
VACUUM (ANALYZE) events
vacuum (analyze) events

-- @group util_analyze
-- @differs utility-raw-text
ANALYZE users (email, status)
analyze users (email, status)

-- @group util_explain
-- @differs utility-raw-text
EXPLAIN SELECT * FROM orders WHERE user_id = 5
EXPLAIN SELECT * FROM orders WHERE user_id = 6

-- @group util_explain_analyze_options
-- @differs utility-raw-text
EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT count(*) FROM events WHERE kind = 'view'
EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT count(*) FROM events WHERE kind = 'login'

-- @group util_copy_to
-- @differs utility-raw-text
COPY (SELECT id, email FROM users WHERE org_id = 1) TO '/dev/null' WITH (FORMAT csv, HEADER true)
COPY (SELECT id, email FROM users WHERE org_id = 2) TO '/dev/null' WITH (FORMAT csv, HEADER true)

-- @group util_listen
-- @differs utility-raw-text
-- @after UNLISTEN *
LISTEN order_events
listen order_events

-- @group util_notify
-- @differs utility-raw-text
NOTIFY order_events, 'order 1 paid'
NOTIFY order_events, 'order 2 shipped'

-- @group util_do_block
-- @differs utility-raw-text
DO $$ BEGIN PERFORM pg_sleep(0); END $$
do $$ BEGIN PERFORM pg_sleep(0); END $$

-- @group util_call_procedure
-- @differs utility-raw-text
CALL bump_counter('hits', 1)
CALL bump_counter('orders', 5)

-- @group util_lock_table
-- @differs utility-raw-text
-- @before BEGIN
-- @after ROLLBACK
LOCK TABLE scratch IN SHARE ROW EXCLUSIVE MODE
lock table scratch in share row exclusive mode

-- @group util_checkpoint
-- @differs utility-raw-text
CHECKPOINT
checkpoint

-- @group util_refresh_materialized_view
-- @differs utility-raw-text
REFRESH MATERIALIZED VIEW product_ratings
refresh materialized view product_ratings

-- @group util_declare_cursor
-- @differs utility-raw-text
-- @before BEGIN
-- @after ROLLBACK
DECLARE c1 CURSOR FOR SELECT id FROM users WHERE org_id = 1
DECLARE c1 CURSOR FOR SELECT id FROM users WHERE org_id = 2

-- @group util_fetch_cursor
-- @differs utility-raw-text
-- @before BEGIN; DECLARE c2 CURSOR FOR SELECT id FROM orders
-- @after ROLLBACK
FETCH 10 FROM c2
FETCH 50 FROM c2

-- @group util_discard
-- @differs utility-raw-text
DISCARD TEMP
discard temp

-- @group util_reindex
-- @differs utility-raw-text
REINDEX TABLE scratch
reindex table scratch

-- @group util_cluster_verbose_free
-- @differs utility-raw-text
CLUSTER scratch USING scratch_pkey
cluster scratch using scratch_pkey

-- ============================================ documented differences

-- @group diff_in_list_length
-- @differs list-length
SELECT id, email FROM users WHERE id IN (1, 2, 3)
SELECT id, email FROM users WHERE id IN (4, 5)
SELECT id, email FROM users WHERE id IN (6, 7, 8, 9, 10, 11)

-- @group diff_in_list_strings_orm
-- @differs list-length
SELECT "orders".* FROM "orders" WHERE "orders"."status" IN ('paid', 'shipped')
SELECT "orders".* FROM "orders" WHERE "orders"."status" IN ('pending')
SELECT "orders".* FROM "orders" WHERE "orders"."status" IN ('paid', 'shipped', 'cancelled', 'refunded')

-- @group diff_array_length
-- @differs list-length
SELECT name FROM products WHERE id = ANY(ARRAY[1, 2, 3])
SELECT name FROM products WHERE id = ANY(ARRAY[4])

-- @group diff_values_rows
-- @differs list-length
INSERT INTO events (kind, user_id, payload) VALUES ('bulk', 1, '{}'), ('bulk', 2, '{}')
INSERT INTO events (kind, user_id, payload) VALUES ('bulk', 3, '{}')
INSERT INTO events (kind, user_id, payload) VALUES ('bulk', 4, '{}'), ('bulk', 5, '{}'), ('bulk', 6, '{}')

-- @group diff_same_length_in_list_agrees
SELECT name FROM products WHERE sku IN ('SKU-1', 'SKU-2')
SELECT name FROM products WHERE sku IN ('SKU-3', 'SKU-4')

-- @group diff_constant_type
-- @differs constant-type
SELECT id FROM products WHERE price > 10
SELECT id FROM products WHERE price > 10.5

-- @group diff_constant_type_bigint
-- @differs constant-type
SELECT id FROM orders WHERE id > 5
SELECT id FROM orders WHERE id > 5000000000

-- @group diff_null_constant
-- @differs null-constant
UPDATE scratch SET note = NULL WHERE id = 1
UPDATE scratch SET note = 'set' WHERE id = 2
