//! Great-circle distance on a spherical Earth.
//!
//! Geolocation errors are reported in kilometres along the sphere; the mean Earth radius
//! (IUGG R1) keeps the numbers comparable with the usual benchmarks, which use the same model.

/// Mean Earth radius (IUGG R1) in kilometres.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Great-circle distance in kilometres between two points given in degrees.
///
/// The `min(1.0)` guards `asin` against rounding just above 1 for (near-)antipodal points.
pub fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let half_dlat = (p2 - p1) / 2.0;
    let half_dlon = (lon2 - lon1).to_radians() / 2.0;
    let a = half_dlat.sin().powi(2) + p1.cos() * p2.cos() * half_dlon.sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values from an independent Python implementation:
    //
    //   from math import radians, sin, cos, asin, sqrt
    //   R = 6371.0088
    //   def hav(lat1, lon1, lat2, lon2):
    //       p1, p2 = radians(lat1), radians(lat2)
    //       a = sin((p2 - p1) / 2) ** 2 + cos(p1) * cos(p2) * sin(radians(lon2 - lon1) / 2) ** 2
    //       return 2 * R * asin(sqrt(min(1.0, a)))
    //   hav(45.8150, 15.9819, 43.5081, 16.4402)  # Zagreb-Split     259.0628467870543
    //   hav(45.8150, 15.9819, 45.5550, 18.6955)  # Zagreb-Osijek    212.75822397093137
    //   hav(45.8150, 15.9819, 42.6507, 18.0944)  # Zagreb-Dubrovnik 390.00003824580426
    //   hav(45.0, 16.0, -45.0, -164.0)           # antipodes = pi*R 20015.114442035923
    const ZAGREB: (f64, f64) = (45.8150, 15.9819);

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn zagreb_split_matches_reference() {
        assert!(close(
            haversine_km(ZAGREB.0, ZAGREB.1, 43.5081, 16.4402),
            259.0628467870543
        ));
    }

    #[test]
    fn zagreb_osijek_matches_reference() {
        assert!(close(
            haversine_km(ZAGREB.0, ZAGREB.1, 45.5550, 18.6955),
            212.75822397093137
        ));
    }

    #[test]
    fn zagreb_dubrovnik_matches_reference() {
        assert!(close(
            haversine_km(ZAGREB.0, ZAGREB.1, 42.6507, 18.0944),
            390.00003824580426
        ));
    }

    #[test]
    fn antipodes_are_half_a_circumference_apart() {
        let d = haversine_km(45.0, 16.0, -45.0, -164.0);
        assert!(close(d, 20015.114442035923));
        assert!(close(d, std::f64::consts::PI * EARTH_RADIUS_KM));
    }

    #[test]
    fn identical_points_are_zero_apart() {
        assert_eq!(haversine_km(ZAGREB.0, ZAGREB.1, ZAGREB.0, ZAGREB.1), 0.0);
    }

    #[test]
    fn distance_is_symmetric() {
        let a = haversine_km(ZAGREB.0, ZAGREB.1, 43.5081, 16.4402);
        let b = haversine_km(43.5081, 16.4402, ZAGREB.0, ZAGREB.1);
        assert!(close(a, b));
    }
}
