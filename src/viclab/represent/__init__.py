"""Representations: a Source (encoder or table) encoded once per content key, cached, and its neighbours."""
