"""What replies cost: prices (genai-prices, or a staff override), spending caps and what is
left of them, money as integer micro-dollars, and the in-process cache of what staff configure.
"""
