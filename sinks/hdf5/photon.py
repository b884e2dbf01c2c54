"""Photon-HDF5 0.5 metadata the HDF5 sink writes: official field descriptions (TITLE attributes),
marker labels and the scalar-dataset convention phconvert's validator expects.

Example::

    from sinks.hdf5.photon import TITLES
    TITLES["/photon_data/timestamps"]
"""
from __future__ import annotations

import numpy as np

from engine.messages import FRAME, LINE, PIXEL, USER

LIBVER = ("v108", "v114")
MARKER_LABELS = {PIXEL: "pixel marker", LINE: "line marker", FRAME: "frame marker", USER: "user marker"}

# official Photon-HDF5 0.5 descriptions (TITLE attributes) of the fields we write
TITLES = {
    "/": "A file format for photon-counting detector based single-molecule spectroscopy experiments.",
    "/acquisition_duration": "Measurement duration in seconds.",
    "/description": "A user-defined comment describing the data file.",
    "/format_name": "Name of the file format.",
    "/format_version": "Version for the Photon-HDF5 format.",
    "/identity": "Information about the Photon-HDF5 data file.",
    "/identity/author": "Author of the current data file.",
    "/identity/author_affiliation": "Company or institution the author is affiliated with.",
    "/identity/creation_time": "Creation time of the current Photon-HDF5 file.",
    "/identity/filename": "Original file name of the current Photon-HDF5 file (i.e. file name at creation time).",
    "/identity/filename_full": ("Original file name (with full path) of the current Photon-HDF5 file "
                                "(i.e. full file name at creation time)."),
    "/identity/format_name": "Name of the file format.",
    "/identity/format_url": "Official URL for the Photon-HDF5 format.",
    "/identity/format_version": "Version for the Photon-HDF5 format.",
    "/identity/software": "Name of the software used to create the current Photon-HDF5 file.",
    "/identity/software_version": "Version of the software used to create current the Photon-HDF5 file.",
    "/photon_data": "Group containing arrays of photon-data.",
    "/photon_data/detectors": "Array of pixel IDs for each timestamp.",
    "/photon_data/timestamps": ("Array of photon timestamps. Units specified in timestamps_units "
                                "(defined in timestamps_specs/)."),
    "/photon_data/timestamps_specs": "Specifications for timestamps.",
    "/photon_data/timestamps_specs/timestamps_unit": "Value of 1-unit timestamp-increment in seconds.",
    "/photon_data/measurement_specs": ("Metadata necessary for interpretation of the particular type of "
                                       "measurement."),
    "/photon_data/measurement_specs/measurement_type": "Name of the measurement the data represents.",
    "/photon_data/measurement_specs/detectors_specs": "Mapping between the pixel IDs and the detection channels.",
    "/setup": "Information about the experimental setup.",
    "/setup/num_pixels": "Total number of detector pixels.",
    "/setup/num_spots": 'Number of excitation (or detection) "spots" in the sample.',
    "/setup/num_spectral_ch": "Number of distinct spectral bands which are acquired.",
    "/setup/num_polarization_ch": "Number of distinct polarization states which are acquired.",
    "/setup/num_split_ch": ("Number of distinct detection channels detecting the same spectral band and "
                            "polarization. This value is > 1 when using a non-polarizing beam splitter."),
    "/setup/modulated_excitation": ("True (i.e. 1) if there is any form of excitation modulation of excitation "
                                    "wavelength (as in us-ALEX or PAX) or polarization. This field is also True "
                                    "for pulse-interleaved excitation (PIE) or ns-ALEX measurements."),
    "/setup/lifetime": ("True (i.e. 1) if the measurement includes a nanotimes array of photon arrival times "
                        "with respect to a laser pulse (as in TCSPC measurements)."),
    "/setup/excitation_alternated": ("New in version 0.5. Indicates whether each excitation source is "
                                     "alternated (True, or 1) or not alternated (False, or 0)."),
    "/setup/excitation_cw": ("For each excitation source, this field indicates whether excitation is "
                             "continuous wave (CW), True (i.e. 1), or pulsed, False (i.e. 0)."),
    "/setup/detectors": ("Metadata relative to each detector's pixel. Each field is an array with size equal "
                         "to the number of the detectors."),
    "/setup/detectors/id": "Detector IDs as they appear on /photon_data/detectors.",
    "/setup/detectors/counts": "Total number of counts detected by each detector.",
}
_SPLIT_ORD = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth"]


def split_title(i):
    return (f"Pixel IDs for the {_SPLIT_ORD[i] if i < len(_SPLIT_ORD) else f'{i + 1}th'} channel split "
            "through a non-polarizing beam splitter.")




def write_title(obj, path):
    """Set the official TITLE attribute of the field at ``path`` (if it has one)."""
    t = TITLES.get(path)
    if t is not None:
        obj.attrs["TITLE"] = np.bytes_(t)


def write_scalar(grp, name, value, path):
    """Create (or overwrite) a scalar dataset as PyTables/phconvert read it."""
    if isinstance(value, str):
        value = np.bytes_(value.encode())
    if name in grp:
        grp[name][()] = value
        return grp[name]
    ds = grp.create_dataset(name, data=value)
    write_title(ds, path)
    # PyTables (used by phconvert) returns Python scalars only for the 'python' flavor
    ds.attrs["CLASS"] = np.bytes_(b"ARRAY")
    ds.attrs["VERSION"] = np.bytes_(b"2.4")
    ds.attrs["FLAVOR"] = np.bytes_(b"python")
    return ds
