//! Authors and their books, and the ORM's lazy-loading loop over them:
//! the N+1 workload the dashboard's browser tests show.

use anyhow::{ensure, Result};
use tokio_postgres::Client;

use crate::unique_name;

/// Two tables of their own in the app database: 50 authors, 500 books.
pub struct Books {
    pub authors: String,
    pub books: String,
}

impl Books {
    pub async fn create(client: &Client) -> Result<Books> {
        let authors = unique_name("authors");
        let books = unique_name("books");
        client
            .batch_execute(&format!(
                "CREATE TABLE {authors} (id int PRIMARY KEY, name text NOT NULL);
                 CREATE TABLE {books} (id serial PRIMARY KEY, author_id int NOT NULL, title text NOT NULL);
                 INSERT INTO {authors} SELECT i, 'author ' || i FROM generate_series(1, 50) i;
                 INSERT INTO {books} (author_id, title)
                     SELECT 1 + i % 50, 'book ' || i FROM generate_series(1, 500) i;"
            ))
            .await?;
        Ok(Books { authors, books })
    }

    /// The statement the loop repeats, as the API shows it.
    pub fn child_query(&self) -> String {
        format!("SELECT id, title FROM {} WHERE author_id = $1", self.books)
    }

    /// `children` authors, then one child SELECT per author, all in one
    /// transaction: one loop.
    pub async fn n_plus_one_loop(&self, client: &mut Client, children: i32) -> Result<()> {
        let tx = client.transaction().await?;
        let parents = tx
            .query(
                &format!(
                    "SELECT id, name FROM {} ORDER BY id LIMIT {children}",
                    self.authors
                ),
                &[],
            )
            .await?;
        ensure!(
            parents.len() == children as usize,
            "{} authors",
            parents.len()
        );
        let child = self.child_query();
        for row in parents {
            let id: i32 = row.get(0);
            tx.query(child.as_str(), &[&id]).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
