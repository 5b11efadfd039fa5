"""Reading finished runs back: the comparison table (`table`), its plots (`plots`), and the files a
comparison leaves (`summary`, used by digitlab-compare and by every multirun's sweep summary)."""
