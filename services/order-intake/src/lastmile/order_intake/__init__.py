"""Order intake: where merchants' systems hand Lastmile their orders."""
