"""The dashboard's state as plain Python: counts, workers, throughput. No Textual and no sockets here,
so each piece is tested on its own and the widgets only render it."""
