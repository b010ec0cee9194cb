//! The demo's shop: its schema and data, and the clients that browse it
//! through pgvigil.
//!
//! Every page is there to make one of pgvigil's findings appear on the
//! dashboard within seconds:
//! * the customer page loads orders lazily, then each order's items one
//!   query at a time: an N+1 loop (with the orders query as its parent);
//! * its eager twin loads the same with one JOIN, for comparison;
//! * the monthly report is slow (over `slow_query_ms`);
//! * checkout retries a duplicate e-mail address: a burst of unique
//!   violations every few seconds;
//! * parcel tracking filters on a column without an index: the advisor
//!   proposes one.
//!
//! Most clients sit idle between pages (a think time of seconds), as web
//! users do: a few hundred of them make a few hundred statements a second,
//! which a small machine serves without strain.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_postgres::{Client, NoTls, Statement};

/// Customers in the generated data; each has `ORDERS_PER_CUSTOMER` orders,
/// so the lazy page runs that many item queries.
const CUSTOMERS: i64 = 2_000;
const ORDERS_PER_CUSTOMER: i64 = 10;
const PRODUCTS: i64 = 500;
/// Tracking events per order: enough rows (100,000) that the unindexed
/// lookup is a sequential scan the planner, and so the advisor, care about.
const EVENTS_PER_ORDER: i64 = 5;

/// Think time of a browsing client between two pages, uniform in this
/// range: with the default 300 clients, about 100 pages a second.
const THINK_MIN: Duration = Duration::from_millis(1_000);
const THINK_MAX: Duration = Duration::from_millis(5_000);
/// How often the report runs and the checkout error burst happens.
const REPORT_EVERY: Duration = Duration::from_secs(5);
const ERROR_BURST_EVERY: Duration = Duration::from_secs(8);
const ERROR_BURST_SIZE: usize = 5;
/// Clients logging in at once while the demo ramps up: each login is a
/// SCRAM exchange, costly on purpose.
const CONNECT_CONCURRENCY: usize = 16;
/// Pause before a client whose connection broke logs in again.
const RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// The schema and data, created directly on PostgreSQL (not through
/// pgvigil) so the statistics start with the shop's traffic only.
const SCHEMA: &str = "
CREATE TABLE customers (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL,
    email      text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE products (
    id    bigserial PRIMARY KEY,
    name  text NOT NULL,
    price numeric(10, 2) NOT NULL
);
CREATE TABLE orders (
    id          bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers,
    placed_at   timestamptz NOT NULL,
    status      text NOT NULL
);
CREATE INDEX orders_customer_id_idx ON orders (customer_id);
CREATE TABLE order_items (
    id         bigserial PRIMARY KEY,
    order_id   bigint NOT NULL REFERENCES orders,
    product_id bigint NOT NULL REFERENCES products,
    quantity   int NOT NULL,
    unit_price numeric(10, 2) NOT NULL
);
CREATE INDEX order_items_order_id_idx ON order_items (order_id);
-- No index on tracking_code: the parcel tracking page scans the table.
CREATE TABLE shipment_events (
    id            bigserial PRIMARY KEY,
    order_id      bigint NOT NULL,
    tracking_code text NOT NULL,
    status        text NOT NULL,
    at            timestamptz NOT NULL
);
";

/// Page queries, prepared once per client (as an ORM's statement cache does).
const CUSTOMER: &str = "SELECT id, name, email FROM customers WHERE id = $1";
const CUSTOMER_ORDERS: &str =
    "SELECT id, placed_at, status FROM orders WHERE customer_id = $1 ORDER BY placed_at DESC LIMIT 10";
const ORDER_ITEMS: &str =
    "SELECT product_id, quantity, unit_price FROM order_items WHERE order_id = $1";
const CUSTOMER_ORDERS_WITH_ITEMS: &str =
    "SELECT o.id, o.placed_at, o.status, i.product_id, i.quantity, i.unit_price \
     FROM orders o JOIN order_items i ON i.order_id = o.id \
     WHERE o.customer_id = $1 ORDER BY o.placed_at DESC, i.id";
const PRODUCT: &str = "SELECT id, name, price FROM products WHERE id = $1";
const ORDER_STATUS: &str = "SELECT status, placed_at FROM orders WHERE id = $1";
const TRACKING: &str =
    "SELECT status, at FROM shipment_events WHERE tracking_code = $1 ORDER BY at DESC";
/// The monthly report. The materialized one-row CTE stands in for a read
/// from slow storage: it makes the report slower than `slow_query_ms`
/// without spending the demo machine's CPU on a big aggregate.
const MONTHLY_REPORT: &str = "WITH cold_archive AS MATERIALIZED (SELECT pg_sleep(0.7)) \
     SELECT date_trunc('month', o.placed_at) AS month, count(DISTINCT o.id) AS orders, \
            sum(i.quantity * i.unit_price) AS revenue \
     FROM orders o JOIN order_items i ON i.order_id = o.id CROSS JOIN cold_archive \
     GROUP BY 1 ORDER BY 1";
const SIGN_UP: &str = "INSERT INTO customers (name, email) VALUES ($1, $2)";

/// Creates the shop's tables and rows. `app` is a session as the owner of
/// the demo database, straight to PostgreSQL.
pub async fn create_shop(app: &Client) -> Result<()> {
    app.batch_execute(SCHEMA)
        .await
        .context("creating the shop's tables")?;
    let data = format!(
        "INSERT INTO customers (name, email)
           SELECT 'Customer ' || g, 'customer' || g || '@example.com' FROM generate_series(1, {CUSTOMERS}) g;
         INSERT INTO products (name, price)
           SELECT 'Product ' || g, 1 + (g * 7919 % 20000) / 100.0 FROM generate_series(1, {PRODUCTS}) g;
         INSERT INTO orders (customer_id, placed_at, status)
           SELECT 1 + g % {CUSTOMERS}, now() - (g % 365) * interval '1 day',
                  (ARRAY['placed', 'paid', 'shipped', 'delivered'])[1 + g % 4]
           FROM generate_series(1, {orders}) g;
         INSERT INTO order_items (order_id, product_id, quantity, unit_price)
           SELECT o.id, 1 + (o.id * 31 + k) % {PRODUCTS}, 1 + k, 1 + (o.id * 13 + k) % 9000 / 100.0
           FROM orders o CROSS JOIN generate_series(0, 2) k;
         INSERT INTO shipment_events (order_id, tracking_code, status, at)
           SELECT o.id, 'TRK' || lpad(o.id::text, 8, '0'),
                  (ARRAY['label', 'picked up', 'in transit', 'out for delivery', 'delivered'])[1 + k],
                  o.placed_at + k * interval '1 day'
           FROM orders o CROSS JOIN generate_series(0, {last_event}) k;
         ANALYZE;",
        orders = CUSTOMERS * ORDERS_PER_CUSTOMER,
        last_event = EVENTS_PER_ORDER - 1,
    );
    app.batch_execute(&data)
        .await
        .context("filling the shop's tables")
}

/// What the clients report, for the live line.
#[derive(Default)]
pub struct Counters {
    /// Pages served.
    pub pages: AtomicU64,
    /// Errors other than the deliberate ones (a failed login, a broken
    /// connection).
    pub unexpected_errors: AtomicU64,
}

/// The running clients.
pub struct Workload {
    tasks: JoinSet<()>,
    stop: watch::Sender<bool>,
    pub counters: Arc<Counters>,
}

impl Workload {
    /// Starts `browsers` browsing clients, plus one running the report and
    /// one at checkout, all through pgvigil (`target`).
    pub fn start(target: tokio_postgres::Config, browsers: usize) -> Workload {
        let (stop, stopped) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let logins = Arc::new(tokio::sync::Semaphore::new(CONNECT_CONCURRENCY));
        let mut tasks = JoinSet::new();
        let roles = [Role::Reports, Role::Checkout]
            .into_iter()
            .chain(std::iter::repeat_n(Role::Browser, browsers));
        for (n, role) in roles.enumerate() {
            let mut config = target.clone();
            config.application_name(role.application_name());
            let client = ShopClient {
                role,
                config,
                rng: Rng::new(n as u64),
                counters: counters.clone(),
                logins: logins.clone(),
                stopped: stopped.clone(),
            };
            tasks.spawn(client.run());
        }
        Workload {
            tasks,
            stop,
            counters,
        }
    }

    /// Tells every client to finish its page and log out, and waits for
    /// them (at most `limit`; stragglers are dropped, which closes their
    /// connections).
    pub async fn stop(mut self, limit: Duration) {
        let _ = self.stop.send(true);
        let all_done = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(limit, all_done).await.is_err() {
            self.tasks.abort_all();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Browser,
    Reports,
    Checkout,
}

impl Role {
    /// Shown next to slow queries and N+1 findings, as an application's
    /// own name would be.
    fn application_name(self) -> &'static str {
        match self {
            Role::Browser => "shop-web",
            Role::Reports => "shop-reports",
            Role::Checkout => "shop-checkout",
        }
    }

    /// Time until this client's next page.
    fn pause(self, rng: &mut Rng) -> Duration {
        match self {
            Role::Browser => {
                let span = (THINK_MAX - THINK_MIN).as_millis() as u64;
                THINK_MIN + Duration::from_millis(rng.below(span + 1))
            }
            Role::Reports => REPORT_EVERY,
            Role::Checkout => ERROR_BURST_EVERY,
        }
    }
}

/// The statements a client prepared after login.
struct Prepared {
    customer: Statement,
    customer_orders: Statement,
    order_items: Statement,
    customer_orders_with_items: Statement,
    product: Statement,
    order_status: Statement,
    tracking: Statement,
    report: Statement,
    sign_up: Statement,
}

impl Prepared {
    async fn new(client: &Client) -> Result<Prepared, tokio_postgres::Error> {
        Ok(Prepared {
            customer: client.prepare(CUSTOMER).await?,
            customer_orders: client.prepare(CUSTOMER_ORDERS).await?,
            order_items: client.prepare(ORDER_ITEMS).await?,
            customer_orders_with_items: client.prepare(CUSTOMER_ORDERS_WITH_ITEMS).await?,
            product: client.prepare(PRODUCT).await?,
            order_status: client.prepare(ORDER_STATUS).await?,
            tracking: client.prepare(TRACKING).await?,
            report: client.prepare(MONTHLY_REPORT).await?,
            sign_up: client.prepare(SIGN_UP).await?,
        })
    }
}

struct ShopClient {
    role: Role,
    config: tokio_postgres::Config,
    rng: Rng,
    counters: Arc<Counters>,
    logins: Arc<tokio::sync::Semaphore>,
    stopped: watch::Receiver<bool>,
}

impl ShopClient {
    async fn run(mut self) {
        // Browsers start spread over one think time, so the pages do not
        // come in waves.
        let first = Duration::from_millis(self.rng.below(THINK_MAX.as_millis() as u64));
        if self.sleep(first).await {
            return;
        }
        loop {
            let session = match self.login().await {
                Some(s) => s,
                None => return,
            };
            let stopped = self.browse(&session.0, &session.1).await;
            if stopped {
                return;
            }
            if self.sleep(RECONNECT_DELAY).await {
                return;
            }
        }
    }

    /// Logs in through pgvigil and prepares; None once the demo stops.
    async fn login(&mut self) -> Option<(Client, Prepared)> {
        loop {
            let logins = self.logins.clone();
            let config = self.config.clone();
            let attempt = async move {
                let _permit = logins.acquire().await;
                let (client, connection) = config.connect(NoTls).await?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                let prepared = Prepared::new(&client).await?;
                Ok::<_, tokio_postgres::Error>((client, prepared))
            };
            let result = tokio::select! {
                r = attempt => r,
                _ = self.stopped.wait_for(|s| *s) => return None,
            };
            match result {
                Ok(session) => return Some(session),
                Err(_) => {
                    self.counters
                        .unexpected_errors
                        .fetch_add(1, Ordering::Relaxed);
                    if self.sleep(RECONNECT_DELAY).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Serves pages until the demo stops (true) or the connection breaks
    /// (false).
    async fn browse(&mut self, client: &Client, p: &Prepared) -> bool {
        loop {
            let pause = self.role.pause(&mut self.rng);
            if self.sleep(pause).await {
                return true;
            }
            let page = match self.role {
                Role::Browser => self.browse_one(client, p).await,
                Role::Reports => client.query(&p.report, &[]).await.map(drop),
                Role::Checkout => self.error_burst(client, p).await,
            };
            match page {
                Ok(()) => {
                    self.counters.pages.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    self.counters
                        .unexpected_errors
                        .fetch_add(1, Ordering::Relaxed);
                    if client.is_closed() {
                        return false;
                    }
                }
            }
        }
    }

    /// One page a shopper might open, picked at random.
    async fn browse_one(
        &mut self,
        client: &Client,
        p: &Prepared,
    ) -> Result<(), tokio_postgres::Error> {
        let customer = 1 + self.rng.below(CUSTOMERS as u64) as i64;
        match self.rng.below(100) {
            // The product page: one indexed lookup.
            0..=39 => {
                let product = 1 + self.rng.below(PRODUCTS as u64) as i64;
                client.query(&p.product, &[&product]).await?;
            }
            // "My orders", lazily: the orders, then each order's items.
            40..=64 => {
                client.query(&p.customer, &[&customer]).await?;
                let orders = client.query(&p.customer_orders, &[&customer]).await?;
                for order in orders {
                    let id: i64 = order.try_get(0)?;
                    client.query(&p.order_items, &[&id]).await?;
                }
            }
            // The same page, eagerly: one JOIN.
            65..=84 => {
                client.query(&p.customer, &[&customer]).await?;
                client
                    .query(&p.customer_orders_with_items, &[&customer])
                    .await?;
            }
            // Order status.
            85..=94 => {
                let order = 1 + self.rng.below((CUSTOMERS * ORDERS_PER_CUSTOMER) as u64) as i64;
                client.query(&p.order_status, &[&order]).await?;
            }
            // Parcel tracking, by a column without an index.
            _ => {
                let order = 1 + self.rng.below((CUSTOMERS * ORDERS_PER_CUSTOMER) as u64);
                let code = format!("TRK{order:08}");
                client.query(&p.tracking, &[&code]).await?;
            }
        }
        Ok(())
    }

    /// Checkout signs up a customer whose e-mail address is taken, and
    /// retries a few times: unique violations (23505) are the expected
    /// outcome, anything else is a real error.
    async fn error_burst(
        &mut self,
        client: &Client,
        p: &Prepared,
    ) -> Result<(), tokio_postgres::Error> {
        for _ in 0..ERROR_BURST_SIZE {
            let n = 1 + self.rng.below(CUSTOMERS as u64);
            let email = format!("customer{n}@example.com");
            let name = format!("Customer {n}");
            match client.execute(&p.sign_up, &[&name, &email]).await {
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {}
                Err(e) => return Err(e),
                Ok(_) => {}
            }
        }
        Ok(())
    }

    /// Sleeps `d`; true when the demo stops meanwhile.
    async fn sleep(&mut self, d: Duration) -> bool {
        if *self.stopped.borrow() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => false,
            _ = self.stopped.wait_for(|s| *s) => true,
        }
    }
}

/// A small xorshift generator: the workload needs variety, not quality,
/// and a seed per client keeps the clients from moving in lockstep.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
        Rng((seed.wrapping_add(1)).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ nanos | 1)
    }

    /// Uniform enough in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if n == 0 {
            0
        } else {
            self.0 % n
        }
    }
}
