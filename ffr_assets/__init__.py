"""Thin Dagster layer over ffr_lib: resources, partitions, assets with checks, sensors, jobs.

An asset calls into ffr_lib and returns paths and metadata, never a live model object.
"""
