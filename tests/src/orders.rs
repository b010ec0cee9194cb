//! Databases of their own for the advisor's tests: an `orders` table
//! with no index on the column the workload filters on.

use anyhow::Result;

use crate::{shared_cluster, unique_name};

/// A database of its own with `orders`: 100k rows, 10k customers, no
/// index but the primary key, statistics up to date; dropped on drop.
pub struct OrdersDb {
    pub name: String,
}

impl OrdersDb {
    /// `prefix` names the database (`unique_name` adds what makes it unique).
    pub fn create(prefix: &str) -> Result<OrdersDb> {
        OrdersDb::create_with(
            prefix,
            "CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int NOT NULL, \
               amount int NOT NULL); \
             INSERT INTO orders (customer_id, amount) \
               SELECT g % 10000, g % 1000 FROM generate_series(1, 100000) g; \
             ALTER TABLE orders OWNER TO app; \
             ANALYZE orders;",
        )
    }

    /// A database of its own, owned by `app`, set up by `setup` (run as
    /// the superuser), for a test that needs another `orders` than
    /// [`OrdersDb::create`]'s; dropped on drop all the same.
    pub fn create_with(prefix: &str, setup: &str) -> Result<OrdersDb> {
        let cluster = shared_cluster();
        let name = unique_name(prefix);
        cluster.psql_admin("postgres", &format!("CREATE DATABASE {name} OWNER app"))?;
        let db = OrdersDb { name };
        cluster.psql_admin(&db.name, setup)?;
        Ok(db)
    }
}

impl Drop for OrdersDb {
    fn drop(&mut self) {
        let _ = shared_cluster().psql_admin(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}
