"""Wire formats, declared once as field tables and shared by gateware and software."""
