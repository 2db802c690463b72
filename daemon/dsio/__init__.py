"""dsio"""
