"""Rebuild sales.sqlite, the small database the quickstart flow reads."""
import os
import sqlite3

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sales.sqlite")
if os.path.exists(path):
    os.remove(path)
con = sqlite3.connect(path)
con.execute("CREATE TABLE sales (id INTEGER PRIMARY KEY, region TEXT NOT NULL, amount REAL, sold_on TEXT)")
con.executemany(
    "INSERT INTO sales (id, region, amount, sold_on) VALUES (?, ?, ?, ?)",
    [
        (1, "north", 120.5, "2026-01-03"),
        (2, "south", 80.0, "2026-01-04"),
        (3, "east", 42.25, "2026-01-04"),
        (4, "north", 17.0, "2026-01-05"),
        (5, "west", None, "2026-01-06"),
        (6, "Zürich", 3.5, None),
    ],
)
con.commit()
con.close()
