"""lightx"""
