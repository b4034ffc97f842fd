; A small ALFWorld problem written for this project's offline tests (not from the ALFWorld dataset).
; Same format as ALFWorld's initial_state.pddl files: ALFRED-style object ids (Type_bar_x_bar_y_bar_z, the
; "_bar_" etc. are how ALFWorld mangles "|", "-", "+" and "."), the domain's predicates, and the task type's goal
; from ALFWorld's goal library. tests/test_real_envs.py turns it into a playable game with alfworld-generate.
; Kitchen. Goal: put a clean plate in a cabinet.
; (The engine numbers objects itself; in play: plate 1 on countertop 1, bread 1 on countertop 2, mug 1 in
; cabinet 2, apple 1 in fridge 1, spoon 1 in drawer 1, pan 1 on stoveburner 1; cabinets, drawer, fridge and
; microwave start closed. The plate must be cleaned at sinkbasin 1 first.)
(define (problem plan_trial_T0003)
    (:domain alfred)
    (:objects
        agent1 - agent
        CabinetType - rtype
        CounterTopType - rtype
        SinkBasinType - rtype
        FridgeType - rtype
        MicrowaveType - rtype
        StoveBurnerType - rtype
        DrawerType - rtype
        PlateType - otype
        MugType - otype
        AppleType - otype
        PanType - otype
        SpoonType - otype
        BreadType - otype
        KnifeType - otype
        ButterKnifeType - otype
        Plate_bar__plus_01_dot_10_bar__plus_00_dot_92_bar__minus_01_dot_60 - object
        Mug_bar__minus_01_dot_70_bar__plus_00_dot_40_bar__minus_02_dot_10 - object
        Apple_bar__minus_02_dot_00_bar__plus_00_dot_80_bar__plus_01_dot_00 - object
        Pan_bar__minus_00_dot_50_bar__plus_00_dot_94_bar__minus_02_dot_40 - object
        Spoon_bar__plus_00_dot_90_bar__plus_00_dot_70_bar__minus_02_dot_20 - object
        Bread_bar__minus_01_dot_90_bar__plus_00_dot_98_bar__minus_00_dot_60 - object
        Cabinet_bar__minus_01_dot_70_bar__plus_00_dot_40_bar__minus_02_dot_20 - receptacle
        Cabinet_bar__plus_00_dot_70_bar__plus_02_dot_00_bar__minus_02_dot_50 - receptacle
        CounterTop_bar__minus_01_dot_90_bar__plus_00_dot_95_bar__minus_00_dot_60 - receptacle
        CounterTop_bar__plus_01_dot_10_bar__plus_00_dot_90_bar__minus_01_dot_60 - receptacle
        Sink_bar__minus_00_dot_10_bar__plus_00_dot_90_bar__minus_02_dot_60_bar_SinkBasin - receptacle
        Fridge_bar__minus_02_dot_10_bar__plus_00_dot_00_bar__plus_01_dot_00 - receptacle
        Microwave_bar__minus_00_dot_20_bar__plus_01_dot_70_bar__minus_02_dot_50 - receptacle
        StoveBurner_bar__minus_00_dot_50_bar__plus_00_dot_92_bar__minus_02_dot_40 - receptacle
        Drawer_bar__plus_00_dot_90_bar__plus_00_dot_70_bar__minus_02_dot_20 - receptacle
        loc_bar_0_bar_2_bar_0_bar_30 - location
        loc_bar__minus_6_bar__minus_6_bar_2_bar_60 - location
        loc_bar_3_bar__minus_8_bar_2_bar__minus_30 - location
        loc_bar__minus_6_bar__minus_2_bar_3_bar_45 - location
        loc_bar_3_bar__minus_6_bar_1_bar_45 - location
        loc_bar_0_bar__minus_8_bar_2_bar_45 - location
        loc_bar__minus_7_bar_4_bar_3_bar_60 - location
        loc_bar__minus_1_bar__minus_8_bar_2_bar_0 - location
        loc_bar__minus_2_bar__minus_7_bar_2_bar_45 - location
        loc_bar_4_bar__minus_7_bar_2_bar_60 - location
    )
    (:init
        (atLocation agent1 loc_bar_0_bar_2_bar_0_bar_30)
        (receptacleType Cabinet_bar__minus_01_dot_70_bar__plus_00_dot_40_bar__minus_02_dot_20 CabinetType)
        (receptacleType Cabinet_bar__plus_00_dot_70_bar__plus_02_dot_00_bar__minus_02_dot_50 CabinetType)
        (receptacleType CounterTop_bar__minus_01_dot_90_bar__plus_00_dot_95_bar__minus_00_dot_60 CounterTopType)
        (receptacleType CounterTop_bar__plus_01_dot_10_bar__plus_00_dot_90_bar__minus_01_dot_60 CounterTopType)
        (receptacleType Sink_bar__minus_00_dot_10_bar__plus_00_dot_90_bar__minus_02_dot_60_bar_SinkBasin SinkBasinType)
        (receptacleType Fridge_bar__minus_02_dot_10_bar__plus_00_dot_00_bar__plus_01_dot_00 FridgeType)
        (receptacleType Microwave_bar__minus_00_dot_20_bar__plus_01_dot_70_bar__minus_02_dot_50 MicrowaveType)
        (receptacleType StoveBurner_bar__minus_00_dot_50_bar__plus_00_dot_92_bar__minus_02_dot_40 StoveBurnerType)
        (receptacleType Drawer_bar__plus_00_dot_90_bar__plus_00_dot_70_bar__minus_02_dot_20 DrawerType)
        (receptacleAtLocation Cabinet_bar__minus_01_dot_70_bar__plus_00_dot_40_bar__minus_02_dot_20 loc_bar__minus_6_bar__minus_6_bar_2_bar_60)
        (receptacleAtLocation Cabinet_bar__plus_00_dot_70_bar__plus_02_dot_00_bar__minus_02_dot_50 loc_bar_3_bar__minus_8_bar_2_bar__minus_30)
        (receptacleAtLocation CounterTop_bar__minus_01_dot_90_bar__plus_00_dot_95_bar__minus_00_dot_60 loc_bar__minus_6_bar__minus_2_bar_3_bar_45)
        (receptacleAtLocation CounterTop_bar__plus_01_dot_10_bar__plus_00_dot_90_bar__minus_01_dot_60 loc_bar_3_bar__minus_6_bar_1_bar_45)
        (receptacleAtLocation Sink_bar__minus_00_dot_10_bar__plus_00_dot_90_bar__minus_02_dot_60_bar_SinkBasin loc_bar_0_bar__minus_8_bar_2_bar_45)
        (receptacleAtLocation Fridge_bar__minus_02_dot_10_bar__plus_00_dot_00_bar__plus_01_dot_00 loc_bar__minus_7_bar_4_bar_3_bar_60)
        (receptacleAtLocation Microwave_bar__minus_00_dot_20_bar__plus_01_dot_70_bar__minus_02_dot_50 loc_bar__minus_1_bar__minus_8_bar_2_bar_0)
        (receptacleAtLocation StoveBurner_bar__minus_00_dot_50_bar__plus_00_dot_92_bar__minus_02_dot_40 loc_bar__minus_2_bar__minus_7_bar_2_bar_45)
        (receptacleAtLocation Drawer_bar__plus_00_dot_90_bar__plus_00_dot_70_bar__minus_02_dot_20 loc_bar_4_bar__minus_7_bar_2_bar_60)
        (openable Cabinet_bar__minus_01_dot_70_bar__plus_00_dot_40_bar__minus_02_dot_20)
        (openable Cabinet_bar__plus_00_dot_70_bar__plus_02_dot_00_bar__minus_02_dot_50)
        (openable Fridge_bar__minus_02_dot_10_bar__plus_00_dot_00_bar__plus_01_dot_00)
        (openable Microwave_bar__minus_00_dot_20_bar__plus_01_dot_70_bar__minus_02_dot_50)
        (openable Drawer_bar__plus_00_dot_90_bar__plus_00_dot_70_bar__minus_02_dot_20)
        (objectType Plate_bar__plus_01_dot_10_bar__plus_00_dot_92_bar__minus_01_dot_60 PlateType)
        (objectType Mug_bar__minus_01_dot_70_bar__plus_00_dot_40_bar__minus_02_dot_10 MugType)
        (objectType Apple_bar__minus_02_dot_00_bar__plus_00_dot_80_bar__plus_01_dot_00 AppleType)
        (objectType Pan_bar__minus_00_dot_50_bar__plus_00_dot_94_bar__minus_02_dot_40 PanType)
        (objectType Spoon_bar__plus_00_dot_90_bar__plus_00_dot_70_bar__minus_02_dot_20 SpoonType)
        (objectType Bread_bar__minus_01_dot_90_bar__plus_00_dot_98_bar__minus_00_dot_60 BreadType)
        (pickupable Plate_bar__plus_01_dot_10_bar__plus_00_dot_92_bar__minus_01_dot_60)
        (pickupable Mug_bar__minus_01_dot_70_bar__plus_00_dot_40_bar__minus_02_dot_10)
        (pickupable Apple_bar__minus_02_dot_00_bar__plus_00_dot_80_bar__plus_01_dot_00)
        (pickupable Pan_bar__minus_00_dot_50_bar__plus_00_dot_94_bar__minus_02_dot_40)
        (pickupable Spoon_bar__plus_00_dot_90_bar__plus_00_dot_70_bar__minus_02_dot_20)
        (pickupable Bread_bar__minus_01_dot_90_bar__plus_00_dot_98_bar__minus_00_dot_60)
        (cleanable Plate_bar__plus_01_dot_10_bar__plus_00_dot_92_bar__minus_01_dot_60)
        (cleanable Mug_bar__minus_01_dot_70_bar__plus_00_dot_40_bar__minus_02_dot_10)
        (cleanable Apple_bar__minus_02_dot_00_bar__plus_00_dot_80_bar__plus_01_dot_00)
        (cleanable Pan_bar__minus_00_dot_50_bar__plus_00_dot_94_bar__minus_02_dot_40)
        (cleanable Spoon_bar__plus_00_dot_90_bar__plus_00_dot_70_bar__minus_02_dot_20)
        (heatable Plate_bar__plus_01_dot_10_bar__plus_00_dot_92_bar__minus_01_dot_60)
        (heatable Mug_bar__minus_01_dot_70_bar__plus_00_dot_40_bar__minus_02_dot_10)
        (heatable Apple_bar__minus_02_dot_00_bar__plus_00_dot_80_bar__plus_01_dot_00)
        (heatable Bread_bar__minus_01_dot_90_bar__plus_00_dot_98_bar__minus_00_dot_60)
        (coolable Plate_bar__plus_01_dot_10_bar__plus_00_dot_92_bar__minus_01_dot_60)
        (coolable Mug_bar__minus_01_dot_70_bar__plus_00_dot_40_bar__minus_02_dot_10)
        (coolable Apple_bar__minus_02_dot_00_bar__plus_00_dot_80_bar__plus_01_dot_00)
        (coolable Pan_bar__minus_00_dot_50_bar__plus_00_dot_94_bar__minus_02_dot_40)
        (coolable Bread_bar__minus_01_dot_90_bar__plus_00_dot_98_bar__minus_00_dot_60)
        (inReceptacle Plate_bar__plus_01_dot_10_bar__plus_00_dot_92_bar__minus_01_dot_60 CounterTop_bar__plus_01_dot_10_bar__plus_00_dot_90_bar__minus_01_dot_60)
        (inReceptacle Mug_bar__minus_01_dot_70_bar__plus_00_dot_40_bar__minus_02_dot_10 Cabinet_bar__minus_01_dot_70_bar__plus_00_dot_40_bar__minus_02_dot_20)
        (inReceptacle Apple_bar__minus_02_dot_00_bar__plus_00_dot_80_bar__plus_01_dot_00 Fridge_bar__minus_02_dot_10_bar__plus_00_dot_00_bar__plus_01_dot_00)
        (inReceptacle Pan_bar__minus_00_dot_50_bar__plus_00_dot_94_bar__minus_02_dot_40 StoveBurner_bar__minus_00_dot_50_bar__plus_00_dot_92_bar__minus_02_dot_40)
        (inReceptacle Spoon_bar__plus_00_dot_90_bar__plus_00_dot_70_bar__minus_02_dot_20 Drawer_bar__plus_00_dot_90_bar__plus_00_dot_70_bar__minus_02_dot_20)
        (inReceptacle Bread_bar__minus_01_dot_90_bar__plus_00_dot_98_bar__minus_00_dot_60 CounterTop_bar__minus_01_dot_90_bar__plus_00_dot_95_bar__minus_00_dot_60)
        (objectAtLocation Plate_bar__plus_01_dot_10_bar__plus_00_dot_92_bar__minus_01_dot_60 loc_bar_3_bar__minus_6_bar_1_bar_45)
        (objectAtLocation Mug_bar__minus_01_dot_70_bar__plus_00_dot_40_bar__minus_02_dot_10 loc_bar__minus_6_bar__minus_6_bar_2_bar_60)
        (objectAtLocation Apple_bar__minus_02_dot_00_bar__plus_00_dot_80_bar__plus_01_dot_00 loc_bar__minus_7_bar_4_bar_3_bar_60)
        (objectAtLocation Pan_bar__minus_00_dot_50_bar__plus_00_dot_94_bar__minus_02_dot_40 loc_bar__minus_2_bar__minus_7_bar_2_bar_45)
        (objectAtLocation Spoon_bar__plus_00_dot_90_bar__plus_00_dot_70_bar__minus_02_dot_20 loc_bar_4_bar__minus_7_bar_2_bar_60)
        (objectAtLocation Bread_bar__minus_01_dot_90_bar__plus_00_dot_98_bar__minus_00_dot_60 loc_bar__minus_6_bar__minus_2_bar_3_bar_45)
        (canContain CabinetType PlateType)
        (canContain CabinetType MugType)
        (canContain CabinetType PanType)
        (canContain CounterTopType PlateType)
        (canContain CounterTopType MugType)
        (canContain CounterTopType AppleType)
        (canContain CounterTopType PanType)
        (canContain CounterTopType SpoonType)
        (canContain CounterTopType BreadType)
        (canContain SinkBasinType PlateType)
        (canContain SinkBasinType MugType)
        (canContain SinkBasinType AppleType)
        (canContain SinkBasinType PanType)
        (canContain SinkBasinType SpoonType)
        (canContain FridgeType PlateType)
        (canContain FridgeType MugType)
        (canContain FridgeType AppleType)
        (canContain FridgeType PanType)
        (canContain FridgeType BreadType)
        (canContain MicrowaveType PlateType)
        (canContain MicrowaveType MugType)
        (canContain MicrowaveType AppleType)
        (canContain MicrowaveType BreadType)
        (canContain StoveBurnerType PanType)
        (canContain DrawerType SpoonType)
    )
    (:goal
        (and
            (exists (?r - receptacle)
                (exists (?o - object)
                    (and
                        (cleanable ?o)
                        (objectType ?o PlateType)
                        (receptacleType ?r CabinetType)
                        (isClean ?o)
                        (inReceptacle ?o ?r)
                    )
                )
            )
        )
    )
)
