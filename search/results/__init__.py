"""Reading what a study found: fronts and tables, parameter importance, configurations as people read them."""
