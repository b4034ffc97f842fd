; A small ALFWorld problem written for this project's offline tests (not from the ALFWorld dataset).
; Same format as ALFWorld's initial_state.pddl files: ALFRED-style object ids (Type_bar_x_bar_y_bar_z, the
; "_bar_" etc. are how ALFWorld mangles "|", "-", "+" and "."), the domain's predicates, and the task type's goal
; from ALFWorld's goal library. tests/test_real_envs.py turns it into a playable game with alfworld-generate.
; Bathroom. Goal: put two soap bars in the garbage can.
; (In play: soapbar 1 and toiletpaper 1 on toilet 1, soapbar 2 and candle 1 on countertop 1, spraybottle 1
; in cabinet 1 (closed), towel 1 on towelholder 1.)
(define (problem plan_trial_T0006)
    (:domain alfred)
    (:objects
        agent1 - agent
        CabinetType - rtype
        CounterTopType - rtype
        SinkBasinType - rtype
        ToiletType - rtype
        GarbageCanType - rtype
        TowelHolderType - rtype
        MicrowaveType - rtype
        FridgeType - rtype
        SoapBarType - otype
        SprayBottleType - otype
        ToiletPaperType - otype
        CandleType - otype
        TowelType - otype
        KnifeType - otype
        ButterKnifeType - otype
        SoapBar_bar__minus_00_dot_60_bar__plus_01_dot_00_bar__minus_01_dot_70 - object
        SoapBar_bar__plus_01_dot_40_bar__plus_00_dot_90_bar__plus_01_dot_20 - object
        SprayBottle_bar__minus_01_dot_30_bar__plus_00_dot_30_bar__minus_01_dot_50 - object
        ToiletPaper_bar__plus_01_dot_50_bar__plus_00_dot_90_bar__plus_01_dot_30 - object
        Candle_bar__minus_00_dot_80_bar__plus_01_dot_00_bar__minus_01_dot_80 - object
        Towel_bar__plus_00_dot_10_bar__plus_01_dot_50_bar__plus_02_dot_00 - object
        Cabinet_bar__minus_01_dot_30_bar__plus_00_dot_30_bar__minus_01_dot_50 - receptacle
        Cabinet_bar__minus_00_dot_30_bar__plus_00_dot_30_bar__minus_01_dot_50 - receptacle
        CounterTop_bar__minus_00_dot_70_bar__plus_00_dot_95_bar__minus_01_dot_70 - receptacle
        Sink_bar__minus_00_dot_70_bar__plus_00_dot_90_bar__minus_01_dot_80_bar_SinkBasin - receptacle
        Toilet_bar__plus_01_dot_40_bar__plus_00_dot_00_bar__plus_01_dot_20 - receptacle
        GarbageCan_bar__plus_01_dot_90_bar__plus_00_dot_00_bar__minus_01_dot_60 - receptacle
        TowelHolder_bar__plus_00_dot_10_bar__plus_01_dot_50_bar__plus_02_dot_10 - receptacle
        loc_bar_1_bar__minus_1_bar_0_bar_30 - location
        loc_bar__minus_5_bar__minus_4_bar_2_bar_60 - location
        loc_bar__minus_1_bar__minus_4_bar_2_bar_60 - location
        loc_bar__minus_3_bar__minus_5_bar_2_bar_45 - location
        loc_bar__minus_3_bar__minus_6_bar_2_bar_45 - location
        loc_bar_5_bar_4_bar_0_bar_60 - location
        loc_bar_7_bar__minus_5_bar_1_bar_60 - location
        loc_bar_0_bar_7_bar_0_bar_0 - location
    )
    (:init
        (atLocation agent1 loc_bar_1_bar__minus_1_bar_0_bar_30)
        (receptacleType Cabinet_bar__minus_01_dot_30_bar__plus_00_dot_30_bar__minus_01_dot_50 CabinetType)
        (receptacleType Cabinet_bar__minus_00_dot_30_bar__plus_00_dot_30_bar__minus_01_dot_50 CabinetType)
        (receptacleType CounterTop_bar__minus_00_dot_70_bar__plus_00_dot_95_bar__minus_01_dot_70 CounterTopType)
        (receptacleType Sink_bar__minus_00_dot_70_bar__plus_00_dot_90_bar__minus_01_dot_80_bar_SinkBasin SinkBasinType)
        (receptacleType Toilet_bar__plus_01_dot_40_bar__plus_00_dot_00_bar__plus_01_dot_20 ToiletType)
        (receptacleType GarbageCan_bar__plus_01_dot_90_bar__plus_00_dot_00_bar__minus_01_dot_60 GarbageCanType)
        (receptacleType TowelHolder_bar__plus_00_dot_10_bar__plus_01_dot_50_bar__plus_02_dot_10 TowelHolderType)
        (receptacleAtLocation Cabinet_bar__minus_01_dot_30_bar__plus_00_dot_30_bar__minus_01_dot_50 loc_bar__minus_5_bar__minus_4_bar_2_bar_60)
        (receptacleAtLocation Cabinet_bar__minus_00_dot_30_bar__plus_00_dot_30_bar__minus_01_dot_50 loc_bar__minus_1_bar__minus_4_bar_2_bar_60)
        (receptacleAtLocation CounterTop_bar__minus_00_dot_70_bar__plus_00_dot_95_bar__minus_01_dot_70 loc_bar__minus_3_bar__minus_5_bar_2_bar_45)
        (receptacleAtLocation Sink_bar__minus_00_dot_70_bar__plus_00_dot_90_bar__minus_01_dot_80_bar_SinkBasin loc_bar__minus_3_bar__minus_6_bar_2_bar_45)
        (receptacleAtLocation Toilet_bar__plus_01_dot_40_bar__plus_00_dot_00_bar__plus_01_dot_20 loc_bar_5_bar_4_bar_0_bar_60)
        (receptacleAtLocation GarbageCan_bar__plus_01_dot_90_bar__plus_00_dot_00_bar__minus_01_dot_60 loc_bar_7_bar__minus_5_bar_1_bar_60)
        (receptacleAtLocation TowelHolder_bar__plus_00_dot_10_bar__plus_01_dot_50_bar__plus_02_dot_10 loc_bar_0_bar_7_bar_0_bar_0)
        (openable Cabinet_bar__minus_01_dot_30_bar__plus_00_dot_30_bar__minus_01_dot_50)
        (openable Cabinet_bar__minus_00_dot_30_bar__plus_00_dot_30_bar__minus_01_dot_50)
        (objectType SoapBar_bar__minus_00_dot_60_bar__plus_01_dot_00_bar__minus_01_dot_70 SoapBarType)
        (objectType SoapBar_bar__plus_01_dot_40_bar__plus_00_dot_90_bar__plus_01_dot_20 SoapBarType)
        (objectType SprayBottle_bar__minus_01_dot_30_bar__plus_00_dot_30_bar__minus_01_dot_50 SprayBottleType)
        (objectType ToiletPaper_bar__plus_01_dot_50_bar__plus_00_dot_90_bar__plus_01_dot_30 ToiletPaperType)
        (objectType Candle_bar__minus_00_dot_80_bar__plus_01_dot_00_bar__minus_01_dot_80 CandleType)
        (objectType Towel_bar__plus_00_dot_10_bar__plus_01_dot_50_bar__plus_02_dot_00 TowelType)
        (pickupable SoapBar_bar__minus_00_dot_60_bar__plus_01_dot_00_bar__minus_01_dot_70)
        (pickupable SoapBar_bar__plus_01_dot_40_bar__plus_00_dot_90_bar__plus_01_dot_20)
        (pickupable SprayBottle_bar__minus_01_dot_30_bar__plus_00_dot_30_bar__minus_01_dot_50)
        (pickupable ToiletPaper_bar__plus_01_dot_50_bar__plus_00_dot_90_bar__plus_01_dot_30)
        (pickupable Candle_bar__minus_00_dot_80_bar__plus_01_dot_00_bar__minus_01_dot_80)
        (pickupable Towel_bar__plus_00_dot_10_bar__plus_01_dot_50_bar__plus_02_dot_00)
        (cleanable SoapBar_bar__minus_00_dot_60_bar__plus_01_dot_00_bar__minus_01_dot_70)
        (cleanable SoapBar_bar__plus_01_dot_40_bar__plus_00_dot_90_bar__plus_01_dot_20)
        (inReceptacle SoapBar_bar__minus_00_dot_60_bar__plus_01_dot_00_bar__minus_01_dot_70 CounterTop_bar__minus_00_dot_70_bar__plus_00_dot_95_bar__minus_01_dot_70)
        (inReceptacle SoapBar_bar__plus_01_dot_40_bar__plus_00_dot_90_bar__plus_01_dot_20 Toilet_bar__plus_01_dot_40_bar__plus_00_dot_00_bar__plus_01_dot_20)
        (inReceptacle SprayBottle_bar__minus_01_dot_30_bar__plus_00_dot_30_bar__minus_01_dot_50 Cabinet_bar__minus_01_dot_30_bar__plus_00_dot_30_bar__minus_01_dot_50)
        (inReceptacle ToiletPaper_bar__plus_01_dot_50_bar__plus_00_dot_90_bar__plus_01_dot_30 Toilet_bar__plus_01_dot_40_bar__plus_00_dot_00_bar__plus_01_dot_20)
        (inReceptacle Candle_bar__minus_00_dot_80_bar__plus_01_dot_00_bar__minus_01_dot_80 CounterTop_bar__minus_00_dot_70_bar__plus_00_dot_95_bar__minus_01_dot_70)
        (inReceptacle Towel_bar__plus_00_dot_10_bar__plus_01_dot_50_bar__plus_02_dot_00 TowelHolder_bar__plus_00_dot_10_bar__plus_01_dot_50_bar__plus_02_dot_10)
        (objectAtLocation SoapBar_bar__minus_00_dot_60_bar__plus_01_dot_00_bar__minus_01_dot_70 loc_bar__minus_3_bar__minus_5_bar_2_bar_45)
        (objectAtLocation SoapBar_bar__plus_01_dot_40_bar__plus_00_dot_90_bar__plus_01_dot_20 loc_bar_5_bar_4_bar_0_bar_60)
        (objectAtLocation SprayBottle_bar__minus_01_dot_30_bar__plus_00_dot_30_bar__minus_01_dot_50 loc_bar__minus_5_bar__minus_4_bar_2_bar_60)
        (objectAtLocation ToiletPaper_bar__plus_01_dot_50_bar__plus_00_dot_90_bar__plus_01_dot_30 loc_bar_5_bar_4_bar_0_bar_60)
        (objectAtLocation Candle_bar__minus_00_dot_80_bar__plus_01_dot_00_bar__minus_01_dot_80 loc_bar__minus_3_bar__minus_5_bar_2_bar_45)
        (objectAtLocation Towel_bar__plus_00_dot_10_bar__plus_01_dot_50_bar__plus_02_dot_00 loc_bar_0_bar_7_bar_0_bar_0)
        (canContain CabinetType SoapBarType)
        (canContain CabinetType SprayBottleType)
        (canContain CabinetType ToiletPaperType)
        (canContain CabinetType CandleType)
        (canContain CounterTopType SoapBarType)
        (canContain CounterTopType SprayBottleType)
        (canContain CounterTopType ToiletPaperType)
        (canContain CounterTopType CandleType)
        (canContain SinkBasinType SoapBarType)
        (canContain ToiletType SoapBarType)
        (canContain ToiletType SprayBottleType)
        (canContain ToiletType ToiletPaperType)
        (canContain ToiletType CandleType)
        (canContain GarbageCanType SoapBarType)
        (canContain GarbageCanType SprayBottleType)
        (canContain GarbageCanType ToiletPaperType)
        (canContain TowelHolderType TowelType)
    )
    (:goal
        (and
            (exists (?r - receptacle)
                (exists (?o1 - object)
                    (and
                        (objectType ?o1 SoapBarType)
                        (receptacleType ?r GarbageCanType)
                        (inReceptacle ?o1 ?r)
                        (exists (?o2 - object)
                            (and
                                (not (= ?o1 ?o2))
                                (objectType ?o2 SoapBarType)
                                (receptacleType ?r GarbageCanType)
                                (inReceptacle ?o2 ?r)
                            )
                        )
                    )
                )
            )
        )
    )
)
