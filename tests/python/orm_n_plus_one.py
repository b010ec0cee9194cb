#!/usr/bin/env python3
"""An ORM page with and without the N+1 problem, for pgvigil's N+1 detector.

SQLAlchemy 2.x on psycopg 3, two tables: authors 1:N books.

Usage: orm_n_plus_one.py DSN MODE [--schema NAME]

  DSN     postgres://user:password@host:port/dbname (pgvigil, or PostgreSQL itself)
  MODE    setup  (re)creates SCHEMA.authors (25 rows) and SCHEMA.books (3 per author)
          lazy   loads the first 20 authors, then touches author.books for each
                 (relationship lazy="select"): 1 authors SELECT + 20 books SELECTs
          eager  the same page with selectinload(Author.books):
                 1 authors SELECT + 1 books SELECT for all 20 authors
  --schema  schema holding the tables (default orm_n_plus_one)

Each page runs in one ORM session, so one transaction, under
application_name "orm-n-plus-one". Prints one JSON line with what the page
saw, e.g. {"mode": "lazy", "authors": 20, "books": 60}.

Needs: pip install -r tests/python/requirements.txt
Exit status: 0 on success, 1 if the page saw wrong data, 2 on bad setup.
"""

import argparse
import json
import sys

try:
    import psycopg  # noqa: F401  (the driver SQLAlchemy loads below)
    from sqlalchemy import ForeignKey, String, create_engine, select, text
    from sqlalchemy.orm import (
        DeclarativeBase,
        Mapped,
        Session,
        mapped_column,
        relationship,
        selectinload,
    )
except ImportError as exc:
    print(
        f"missing Python module ({exc}): run "
        "`python3 -m pip install -r tests/python/requirements.txt`",
        file=sys.stderr,
    )
    sys.exit(2)

APPLICATION_NAME = "orm-n-plus-one"
AUTHORS = 25
PAGE = 20
BOOKS_PER_AUTHOR = 3


def models(schema):
    class Base(DeclarativeBase):
        pass

    class Author(Base):
        __tablename__ = "authors"
        __table_args__ = {"schema": schema}
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(100))
        books: Mapped[list["Book"]] = relationship(
            back_populates="author", lazy="select", order_by="Book.id"
        )

    class Book(Base):
        __tablename__ = "books"
        __table_args__ = {"schema": schema}
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(String(200))
        author_id: Mapped[int] = mapped_column(ForeignKey(f"{schema}.authors.id"), index=True)
        author: Mapped[Author] = relationship(back_populates="books")

    return Base, Author, Book


def engine_for(dsn):
    scheme, sep, rest = dsn.partition("://")
    if not sep or scheme not in ("postgres", "postgresql"):
        print(f"DSN must start with postgres:// (got {dsn!r})", file=sys.stderr)
        sys.exit(2)
    return create_engine(
        f"postgresql+psycopg://{rest}",
        connect_args={"application_name": APPLICATION_NAME, "connect_timeout": 10},
    )


def setup(engine, schema, Base, Author, Book):
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        for a in range(1, AUTHORS + 1):
            author = Author(id=a, name=f"author {a}")
            author.books = [
                Book(id=a * 100 + b, title=f"book {b} of author {a}")
                for b in range(1, BOOKS_PER_AUTHOR + 1)
            ]
            session.add(author)
    return {"authors": AUTHORS, "books": AUTHORS * BOOKS_PER_AUTHOR}


def page(engine, Author, eager):
    query = select(Author).order_by(Author.id).limit(PAGE)
    if eager:
        query = query.options(selectinload(Author.books))
    with Session(engine) as session:
        authors = session.scalars(query).all()
        books = 0
        for author in authors:
            titles = [b.title for b in author.books]
            expected = [f"book {b} of author {author.id}" for b in range(1, BOOKS_PER_AUTHOR + 1)]
            if titles != expected:
                raise SystemExit(f"author {author.id}: books {titles!r}, expected {expected!r}")
            books += len(titles)
    return {"authors": len(authors), "books": books}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dsn")
    parser.add_argument("mode", choices=["setup", "lazy", "eager"])
    parser.add_argument("--schema", default="orm_n_plus_one")
    args = parser.parse_args()

    Base, Author, Book = models(args.schema)
    engine = engine_for(args.dsn)
    try:
        if args.mode == "setup":
            result = setup(engine, args.schema, Base, Author, Book)
        else:
            result = page(engine, Author, eager=args.mode == "eager")
            if result != {"authors": PAGE, "books": PAGE * BOOKS_PER_AUTHOR}:
                print(f"unexpected page: {result}", file=sys.stderr)
                sys.exit(1)
    finally:
        engine.dispose()
    print(json.dumps({"mode": args.mode, **result}))


if __name__ == "__main__":
    main()
