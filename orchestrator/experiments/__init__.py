"""Online experiments: which ranking shoppers prefer, judged by their clicks."""
